// One store-path pattern: the stack config's STORE_PATH (src/config.ts) and the scripts' store_path_re
// (scripts/lib/patterns.sh, read by deploy.sh and sent with the target shim) judge the same samples
// alike. bash matches them exactly as the scripts do ([[ =~ ]]), in a UTF-8 and in the C locale.
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { STORE_PATH } from "../../src/config";

const patterns = path.resolve(__dirname, "../../scripts/lib/patterns.sh");
const hash = "0123456789abcdfghijklmnpqrsvwxyz";

const samples = [
    `/nix/store/${hash}-nixos-system-blog-26.05.20260925.f5c082a`,
    `/nix/store/${hash}-a?b=c+d_e.f-g`,
    `/nix/store/${hash}-.hidden`,
    `/nix/store/${"e".repeat(32)}-x`, // e, o, u and t are not in Nix's base32
    `/nix/store/${"o".repeat(32)}-x`,
    `/nix/store/${"A".repeat(32)}-x`,
    `/nix/store/${hash.slice(1)}-x`,
    `/nix/store/${hash}0-x`,
    `/nix/store/${hash}-`,
    `/nix/store/${hash}-a b`,
    `/nix/store/${hash}-a$(id)`,
    `/nix/store/${hash}-a;b`,
    `/nix/store/${hash}-x/bin`,
    `/nix/store/${hash}-é`,
    `/nix/store/${hash}-x\nother`,
    `/nix/store/${hash}-x\n`,
    `//nix/store/${hash}-x`,
    `/nix/store/../${hash}-x`,
    `-rf`,
    "",
];

function bashMatches(locale: string): boolean[] {
    // One sample per NUL-terminated record; prints 1 or 0 per sample.
    const script = `source ${JSON.stringify(patterns)}; while IFS= read -r -d '' p; do if [[ $p =~ $store_path_re ]]; then echo 1; else echo 0; fi; done`;
    const r = spawnSync("bash", ["-c", script], {
        input: samples.map((s) => `${s}\0`).join(""),
        encoding: "utf8",
        env: { PATH: process.env.PATH, LC_ALL: locale },
    });
    if (r.status !== 0) throw new Error(`bash exited ${r.status}: ${r.stderr}`);
    return r.stdout.trim().split("\n").map((l) => l === "1");
}

test.each(["C", "C.UTF-8"])("STORE_PATH and the scripts' store_path_re agree on every sample (LC_ALL=%s)", (locale) => {
    const expected = samples.map((s) => STORE_PATH.test(s));
    expect(bashMatches(locale)).toEqual(expected);
    // The samples cover both answers.
    expect(expected.filter(Boolean).length).toBeGreaterThanOrEqual(3);
    expect(expected.filter((x) => !x).length).toBeGreaterThanOrEqual(10);
});
