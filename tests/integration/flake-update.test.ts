// scripts/flake-update.sh (the weekly update workflow's work) against local git repositories that
// stand in for GitHub's, on a copy of the project's own nix/flake.nix: each marked input moves to
// the newest commit of its release line, nothing else moves, the lock file is written, and the pull
// request's text says what changed and when the NixOS release in use ends.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

jest.setTimeout(120_000);

const repo = path.resolve(__dirname, "../..");
const script = path.join(repo, "scripts/flake-update.sh");

let dir: string;
const heads: Record<string, string> = {};

function git(cwd: string, ...args: string[]): string {
    return execFileSync("git", args, {
        cwd,
        encoding: "utf8",
        env: {
            ...process.env,
            GIT_AUTHOR_NAME: "t",
            GIT_AUTHOR_EMAIL: "t@example.test",
            GIT_COMMITTER_NAME: "t",
            GIT_COMMITTER_EMAIL: "t@example.test",
            GIT_CONFIG_GLOBAL: "/dev/null",
            GIT_CONFIG_NOSYSTEM: "1",
        },
    }).trim();
}

/** A repository at remotes/OWNER/REPO.git, with a commit per step; returns each step's commit. */
function remote(ownerRepo: string, steps: Array<{ branch?: string; tag?: string; annotated?: boolean }>): string[] {
    const work = path.join(dir, "work", ownerRepo);
    fs.mkdirSync(work, { recursive: true });
    git(work, "init", "-q", "-b", "main");
    const commits: string[] = [];
    for (const [i, step] of steps.entries()) {
        if (step.branch) git(work, "checkout", "-q", "-B", step.branch);
        fs.writeFileSync(path.join(work, "f"), `${i}\n`);
        git(work, "add", "f");
        git(work, "commit", "-q", "-m", `c${i}`);
        const commit = git(work, "rev-parse", "HEAD");
        commits.push(commit);
        if (step.tag) git(work, "tag", ...(step.annotated ? ["-a", "-m", step.tag] : []), step.tag);
    }
    const bare = path.join(dir, "remotes", `${ownerRepo}.git`);
    fs.mkdirSync(path.dirname(bare), { recursive: true });
    git(dir, "clone", "-q", "--bare", work, bare);
    return commits;
}

function run(today: string, extra: string[] = [], env: Record<string, string> = {}) {
    const output = path.join(dir, "github-output");
    fs.writeFileSync(output, "");
    const r = spawnSync("bash", [script, "--flake", path.join(dir, "nix"), "--body", path.join(dir, "body.md"), ...extra], {
        encoding: "utf8",
        timeout: 60_000,
        env: {
            PATH: `${path.join(dir, "bin")}:${process.env.PATH}`,
            GIT_CONFIG_GLOBAL: "/dev/null",
            GIT_CONFIG_NOSYSTEM: "1",
            FLAKE_UPDATE_GIT_URL: `file://${dir}/remotes/%s.git`,
            FLAKE_UPDATE_TODAY: today,
            GITHUB_OUTPUT: output,
            NIX: path.join(dir, "bin/fake-nix"),
            ...env,
        },
    });
    const body = fs.existsSync(path.join(dir, "body.md")) ? fs.readFileSync(path.join(dir, "body.md"), "utf8") : "";
    return { code: r.status, stderr: r.stderr, body, output: fs.readFileSync(output, "utf8"), flake: fs.readFileSync(path.join(dir, "nix/flake.nix"), "utf8") };
}

beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "flake-update-"));
    fs.mkdirSync(path.join(dir, "nix"));
    fs.copyFileSync(path.join(repo, "nix/flake.nix"), path.join(dir, "nix/flake.nix"));
    // `nix flake lock` stand-in: writes a lock file naming every revision the flake's URLs pin.
    fs.mkdirSync(path.join(dir, "bin"));
    fs.writeFileSync(
        path.join(dir, "bin/fake-nix"),
        '#!/bin/sh\n[ "$3 $4" = "flake lock" ] || exit 9\ngrep -o \'github:[^"]*\' "$5/flake.nix" > "$5/flake.lock"\n',
        { mode: 0o755 },
    );
    const nixpkgs = remote("NixOS/nixpkgs", [{ branch: "nixos-26.05" }, { branch: "nixos-26.05" }, { branch: "nixos-26.11" }, { branch: "nixos-25.11" }]);
    heads.nixpkgs = nixpkgs[1]; // the newest of nixos-26.05 (nixos-26.11's is newer, and another branch)
    const disko = remote("nix-community/disko", [
        { tag: "v1.13.0", annotated: true },
        { tag: "v1.14.0", annotated: true },
        { tag: "v1.15.0-rc1" },
        { tag: "v2.0.0", annotated: true },
    ]);
    heads.disko = disko[1];
    const anywhere = remote("nix-community/nixos-anywhere", [{ tag: "1.13.0" }, { tag: "1.9.0" }, { tag: "1.13.1" }]);
    heads.anywhere = anywhere[2];
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test("moves each marked input to the newest commit of its line, leaves the backend, creates the lock file", () => {
    const backend = /backend\.url = "github:FlakM\/backend\/([0-9a-f]{40})"/.exec(fs.readFileSync(path.join(dir, "nix/flake.nix"), "utf8"))![1];
    const r = run("2026-10-01");
    expect(r.stderr).toContain("changed: true");
    expect(r.code).toBe(0);
    expect(r.flake).toContain(`nixpkgs.url = "github:NixOS/nixpkgs/${heads.nixpkgs}";`);
    expect(r.flake).toContain("# update: branch nixos-26.05\n");
    expect(r.flake).toContain(`url = "github:nix-community/disko/${heads.disko}";`);
    expect(r.flake).toContain("# update: tag v1.14.0 within v1.*\n");
    expect(r.flake).toContain(`url = "github:nix-community/nixos-anywhere/${heads.anywhere}";`);
    expect(r.flake).toContain("# update: tag 1.13.1 within 1.*\n");
    expect(r.flake).toContain(`backend.url = "github:FlakM/backend/${backend}";`);
    expect(fs.readFileSync(path.join(dir, "nix/flake.lock"), "utf8")).toContain(`github:NixOS/nixpkgs/${heads.nixpkgs}`);
    expect(r.output).toBe("changed=true\nend-of-support=ok\n");
    expect(r.body).toContain(`| nixpkgs | branch nixos-26.05 | \`f5c082a40f75\` | \`${heads.nixpkgs.slice(0, 12)}\` ([changes](https://github.com/NixOS/nixpkgs/compare/f5c082a40f7571c266e74e80ae2e68aadd8a9fc7...${heads.nixpkgs})) |`);
    expect(r.body).toContain("| disko | tag v1.14.0 (newest v1.*; was v1.13.0) |");
    expect(r.body).toContain("flake.lock` did not exist: this pull request creates it.");
    expect(r.body).toContain("### NixOS 26.05\n\nSupported until 2026-12-31 (91 days from now).");
    expect(r.body).toContain("NixOS closure diff");
});

test("run again with nothing new: no change, and the text says each input is unchanged", () => {
    const r = run("2026-10-01");
    expect(r.code).toBe(0);
    expect(r.output).toBe("changed=false\nend-of-support=ok\n");
    expect(r.body).toContain("| nixpkgs | branch nixos-26.05 |");
    expect(r.body).toContain("| unchanged |");
});

test("says so in the pull request when the release is near its end of support, and when it is past", () => {
    const near = run("2026-12-01");
    expect(near.output).toContain("end-of-support=near");
    expect(near.body).toContain("**NixOS 26.05 is supported only until 2026-12-31, 30 days from now.**");
    const past = run("2027-01-02");
    expect(past.output).toContain("end-of-support=past");
    expect(past.body).toContain("**NixOS 26.05 is no longer supported (its support ended on 2026-12-31): it gets no security fixes.**");
});

test("another release line: its own end; one the table does not know is said, not guessed; a branch that does not exist is refused", () => {
    const flake = path.join(dir, "nix/flake.nix");
    const text = fs.readFileSync(flake, "utf8");
    fs.writeFileSync(flake, text.replace("# update: branch nixos-26.05", "# update: branch nixos-26.11"));
    const r = run("2026-12-01");
    fs.writeFileSync(flake, text);
    expect(r.code).toBe(0);
    expect(r.body).toContain("### NixOS 26.11\n\nSupported until 2027-06-30");
    fs.writeFileSync(flake, text.replace("# update: branch nixos-26.05", "# update: branch nixos-25.11"));
    const unknown = run("2026-12-01");
    fs.writeFileSync(flake, text);
    expect(unknown.code).toBe(0);
    expect(unknown.output).toContain("end-of-support=unknown");
    expect(unknown.body).toContain("Its end of support is not in the table of `scripts/flake-update.sh`");
    fs.writeFileSync(flake, text.replace("# update: branch nixos-26.05", "# update: branch nixos-27.05"));
    const missing = run("2026-12-01");
    fs.writeFileSync(flake, text);
    // nixos-27.05 does not exist in the stand-in nixpkgs: refused, the flake untouched.
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("NixOS/nixpkgs has no branch 'nixos-27.05'");
    expect(fs.readFileSync(flake, "utf8")).toBe(text);
});

test("a malformed marker is bad input, naming the line", () => {
    const flake = path.join(dir, "nix/flake.nix");
    const text = fs.readFileSync(flake, "utf8");
    fs.writeFileSync(flake, text.replace("# update: branch nixos-26.05", "# update: newest nixos"));
    const r = run("2026-12-01");
    fs.writeFileSync(flake, text);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/flake\.nix line \d+: '# update: newest nixos'; expected 'branch BRANCH' or 'tag TAG within GLOB'/);
});
