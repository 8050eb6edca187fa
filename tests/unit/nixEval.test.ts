import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { EVAL_APPLY, evaluateFlake } from "../../src/nixEval";

// The seam runs `nix`; here a stand-in `nix` on PATH records its arguments and answers as told.
// The real nix evaluates a real flake in tests/integration/nix-eval.test.ts.
describe("evaluateFlake, the one nix call", () => {
    let bin: string;
    const savedPath = process.env.PATH;

    beforeEach(() => {
        bin = fs.mkdtempSync(path.join(os.tmpdir(), "fake-nix-"));
        process.env.PATH = bin;
    });
    afterEach(() => {
        process.env.PATH = savedPath;
        fs.rmSync(bin, { recursive: true, force: true });
    });

    function fakeNix(script: string) {
        fs.writeFileSync(path.join(bin, "nix"), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    }

    test("asks for the facts and the toplevel of nixosConfigurations.<name> in one eval --json", () => {
        fakeNix(`printf '%s\\n' "$@" > "${bin}/args"; echo '{"host":{"domain":"a.b"},"toplevel":"/nix/store/x"}'`);
        expect(evaluateFlake("./nix", "blog")).toEqual({ host: { domain: "a.b" }, toplevel: "/nix/store/x" });
        const args = fs.readFileSync(path.join(bin, "args"), "utf8").trimEnd().split("\n");
        expect(args).toEqual([
            "--extra-experimental-features",
            "nix-command flakes",
            "eval",
            "--json",
            './nix#nixosConfigurations."blog"',
            "--apply",
            EVAL_APPLY,
        ]);
    });

    test("fails with nix's own error and the attribute it tried", () => {
        fakeNix(`echo "error: attribute 'blog' missing" >&2; exit 1`);
        expect(() => evaluateFlake("./nix", "blog")).toThrow(
            `nix eval of ./nix#nixosConfigurations."blog" failed (exit 1):\nerror: attribute 'blog' missing`,
        );
    });

    test("says so when nix is not installed", () => {
        expect(() => evaluateFlake("./nix", "blog")).toThrow(
            'Cannot evaluate ./nix#nixosConfigurations."blog": the `nix` command is not on PATH',
        );
    });

    test("says so when nix prints something that is not JSON", () => {
        fakeNix(`echo "warning: Git tree is dirty"`);
        expect(() => evaluateFlake("./nix", "blog")).toThrow("printed no JSON");
    });
});
