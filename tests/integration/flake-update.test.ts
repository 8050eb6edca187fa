// scripts/flake-update.sh (the weekly update workflow's work) against local git repositories that
// stand in for GitHub's, and a stand-in `nix flake lock/update` that locks from them: each input
// moves to the newest commit of its release line (a branch the URL names, through the lock file;
// a marker's tag or branch, through the URL's revision), nothing else moves, a missing lock file is
// created, and the pull request's text says what changed and when the NixOS release in use ends.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

jest.setTimeout(120_000);

const repo = path.resolve(__dirname, "../..");
const script = path.join(repo, "scripts/flake-update.sh");

const BACKEND_REV = "16b7fe52db02456a4549960cf9d9b14a3fe31239";

/** The shape of nix/flake.nix's inputs (nixpkgs on its release branch, the tools pinned by tag). */
function flakeText(revs: { disko: string; anywhere: string; tool: string }, nixpkgsBranch = "nixos-26.05"): string {
    return `{
  inputs = {
    # NixOS release: the branch is the one line to change.
    nixpkgs.url = "github:NixOS/nixpkgs/${nixpkgsBranch}";

    # update: tag v1.13.0 within v1.*
    disko = {
      url = "github:nix-community/disko/${revs.disko}";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # update: tag 1.13.0 within 1.*
    nixos-anywhere = {
      url = "github:nix-community/nixos-anywhere/${revs.anywhere}";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # update: branch main
    tool.url = "github:example/tool/${revs.tool}";

    backend.url = "github:FlakM/backend/${BACKEND_REV}";
  };
  outputs = _: { };
}
`;
}

// `nix flake lock DIR` / `nix flake update --flake DIR NAME...` as Nix does them for github: inputs:
// a revision in the URL is locked as is; a branch is locked at its newest commit when the lock file
// has no entry for it, when its URL changed, or when `update` names it.
const FAKE_NIX = String.raw`#!/usr/bin/env python3
import json, os, re, subprocess, sys
args = [a for a in sys.argv[1:] if a not in ("--extra-experimental-features", "nix-command flakes")]
if args[:2] == ["flake", "lock"]:
    flake, names = args[2], []
elif args[:3] == ["flake", "update", "--flake"]:
    flake, names = args[3], args[4:]
else:
    sys.exit("fake nix: unexpected " + " ".join(sys.argv[1:]))
lock_path = os.path.join(flake, "flake.lock")
old = json.load(open(lock_path)) if os.path.exists(lock_path) else {"nodes": {}}
nodes, name = {"root": {"inputs": {}}}, None
for line in open(os.path.join(flake, "flake.nix")):
    m = re.match(r'\s*([A-Za-z0-9_-]+) = \{', line)
    if m: name = m.group(1)
    m = re.match(r'\s*(?:([A-Za-z0-9_-]+)\.)?url = "github:([^/]+)/([^/]+)/([^"]+)";', line)
    if not m: continue
    n = m.group(1) or name
    owner, repo, ref = m.group(2), m.group(3), m.group(4)
    original = {"type": "github", "owner": owner, "repo": repo, "ref" if not re.fullmatch("[0-9a-f]{40}", ref) else "rev": ref}
    prev = old["nodes"].get(n)
    if "rev" in original:
        rev = ref
    elif prev and prev.get("original") == original and n not in names:
        rev = prev["locked"]["rev"]
    else:
        out = subprocess.run(["git", "ls-remote", os.environ["FLAKE_UPDATE_GIT_URL"].replace("%s", owner + "/" + repo), "refs/heads/" + ref],
                             capture_output=True, text=True).stdout.split()
        if not out: sys.exit("fake nix: cannot resolve " + ref)
        rev = out[0]
    nodes["root"]["inputs"][n] = n
    nodes[n] = {"locked": {"type": "github", "owner": owner, "repo": repo, "rev": rev}, "original": original}
json.dump({"nodes": nodes, "root": "root", "version": 7}, open(lock_path, "w"), indent=2)
`;

let dir: string;
const remotes: Record<string, string> = {};

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

/** Adds commits to the stand-in for OWNER/REPO (a work tree pushed to remotes/OWNER/REPO.git); returns each commit. */
function commit(ownerRepo: string, steps: Array<{ branch?: string; tag?: string; annotated?: boolean }>): string[] {
    const work = path.join(dir, "work", ownerRepo);
    const bare = path.join(dir, "remotes", `${ownerRepo}.git`);
    if (!fs.existsSync(work)) {
        fs.mkdirSync(work, { recursive: true });
        git(work, "init", "-q", "-b", "main");
        fs.mkdirSync(path.dirname(bare), { recursive: true });
        git(dir, "init", "-q", "--bare", bare);
        remotes[ownerRepo] = bare;
    }
    const commits: string[] = [];
    for (const step of steps) {
        if (step.branch) git(work, "checkout", "-q", "-B", step.branch);
        fs.appendFileSync(path.join(work, "f"), `${commits.length}\n`);
        git(work, "add", "f");
        git(work, "commit", "-q", "-m", `c${commits.length}`);
        commits.push(git(work, "rev-parse", "HEAD"));
        if (step.tag) git(work, "tag", ...(step.annotated ? ["-a", "-m", step.tag] : []), step.tag);
    }
    git(work, "push", "-q", "--all", bare);
    git(work, "push", "-q", "--tags", bare);
    return commits;
}

function run(today: string, env: Record<string, string> = {}) {
    const output = path.join(dir, "github-output");
    fs.writeFileSync(output, "");
    const r = spawnSync("bash", [script, "--flake", path.join(dir, "nix"), "--body", path.join(dir, "body.md")], {
        encoding: "utf8",
        timeout: 60_000,
        env: {
            PATH: process.env.PATH,
            GIT_CONFIG_GLOBAL: "/dev/null",
            GIT_CONFIG_NOSYSTEM: "1",
            FLAKE_UPDATE_GIT_URL: `file://${dir}/remotes/%s.git`,
            FLAKE_UPDATE_TODAY: today,
            GITHUB_OUTPUT: output,
            NIX: path.join(dir, "fake-nix"),
            ...env,
        },
    });
    const read = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, "utf8") : "");
    return { code: r.status, stderr: r.stderr, body: read(path.join(dir, "body.md")), output: read(output), flake: read(flakeFile()) };
}

const flakeFile = () => path.join(dir, "nix/flake.nix");
const lockedRev = (name: string) => JSON.parse(fs.readFileSync(path.join(dir, "nix/flake.lock"), "utf8")).nodes[name].locked.rev;
const heads: Record<string, string> = {};
const olds: Record<string, string> = {};

beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "flake-update-"));
    fs.mkdirSync(path.join(dir, "nix"));
    fs.writeFileSync(path.join(dir, "fake-nix"), FAKE_NIX, { mode: 0o755 });
    const nixpkgs = commit("NixOS/nixpkgs", [{ branch: "nixos-26.05" }, { branch: "nixos-26.11" }, { branch: "nixos-25.11" }]);
    heads.nixpkgs = nixpkgs[0];
    const disko = commit("nix-community/disko", [
        { branch: "master", tag: "v1.13.0", annotated: true },
        { tag: "v1.14.0", annotated: true },
        { tag: "v1.15.0-rc1" },
        { tag: "v2.0.0", annotated: true },
    ]);
    olds.disko = disko[0];
    heads.disko = disko[1];
    const anywhere = commit("nix-community/nixos-anywhere", [{ branch: "main", tag: "1.13.0" }, { tag: "1.9.0" }, { tag: "1.13.1" }]);
    olds.anywhere = anywhere[0];
    heads.anywhere = anywhere[2];
    const tool = commit("example/tool", [{ branch: "main" }, {}]);
    olds.tool = tool[0];
    heads.tool = tool[1];
    fs.writeFileSync(flakeFile(), flakeText({ disko: olds.disko, anywhere: olds.anywhere, tool: olds.tool }));
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test("without a lock file: each input moves to the newest of its line, the backend stays, the lock file is created", () => {
    const r = run("2026-10-01");
    expect(r.stderr).toContain("changed: true");
    expect(r.code).toBe(0);
    expect(r.flake).toBe(flakeText({ disko: heads.disko, anywhere: heads.anywhere, tool: heads.tool }).replace("tag v1.13.0 within", "tag v1.14.0 within").replace("tag 1.13.0 within", "tag 1.13.1 within"));
    expect(lockedRev("nixpkgs")).toBe(heads.nixpkgs);
    expect(lockedRev("backend")).toBe(BACKEND_REV);
    expect(r.output).toBe("changed=true\nend-of-support=ok\n");
    expect(r.body).toContain(`| disko | tag v1.14.0 (newest v1.*; was v1.13.0) | \`${olds.disko.slice(0, 12)}\` | \`${heads.disko.slice(0, 12)}\` ([changes](https://github.com/nix-community/disko/compare/${olds.disko}...${heads.disko})) |`);
    expect(r.body).toContain("| nixos-anywhere | tag 1.13.1 (newest 1.*; was 1.13.0) |");
    expect(r.body).toContain(`| tool | branch main | \`${olds.tool.slice(0, 12)}\` | \`${heads.tool.slice(0, 12)}\``);
    expect(r.body).toContain(`| nixpkgs | branch nixos-26.05 (lock file) | not locked | \`${heads.nixpkgs.slice(0, 12)}\` |`);
    expect(r.body).toContain("flake.lock` did not exist: this pull request creates it.");
    expect(r.body).toContain("### NixOS 26.05\n\nSupported until 2026-12-31 (91 days from now).");
    expect(r.body).toContain("NixOS closure diff");
});

test("run again with nothing new: no change, each input unchanged", () => {
    const r = run("2026-10-01");
    expect(r.code).toBe(0);
    expect(r.output).toBe("changed=false\nend-of-support=ok\n");
    expect(r.body).toContain(`| nixpkgs | branch nixos-26.05 (lock file) | \`${heads.nixpkgs.slice(0, 12)}\` | unchanged |`);
    expect(r.body).not.toContain("[changes]");
});

test("a new commit on the nixpkgs branch moves the lock file within the branch, and nothing else", () => {
    const before = fs.readFileSync(flakeFile(), "utf8");
    const [next] = commit("NixOS/nixpkgs", [{ branch: "nixos-26.05" }]);
    commit("NixOS/nixpkgs", [{ branch: "nixos-26.11" }]);
    const r = run("2026-10-01");
    expect(r.code).toBe(0);
    expect(r.output).toBe("changed=true\nend-of-support=ok\n");
    expect(lockedRev("nixpkgs")).toBe(next);
    expect(r.flake).toBe(before);
    expect(r.body).toContain(`([changes](https://github.com/NixOS/nixpkgs/compare/${heads.nixpkgs}...${next}))`);
    expect(r.body).toContain("flake.lock` follows the new revisions.");
    heads.nixpkgs = next;
});

test("says so in the pull request when the release is near its end of support, and when it is past", () => {
    const near = run("2026-12-01");
    expect(near.output).toContain("end-of-support=near");
    expect(near.body).toContain("**NixOS 26.05 is supported only until 2026-12-31, 30 days from now.**");
    const past = run("2027-01-02");
    expect(past.output).toContain("end-of-support=past");
    expect(past.body).toContain("**NixOS 26.05 is no longer supported (its support ended on 2026-12-31): it gets no security fixes.**");
});

test("another release branch has its own end; one the table does not know is said, not guessed; a branch that does not exist is refused", () => {
    const text = fs.readFileSync(flakeFile(), "utf8");
    const onBranch = (branch: string) => text.replace('nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05"', `nixpkgs.url = "github:NixOS/nixpkgs/${branch}"`);
    const lock = fs.readFileSync(path.join(dir, "nix/flake.lock"), "utf8");
    const restore = () => {
        fs.writeFileSync(flakeFile(), text);
        fs.writeFileSync(path.join(dir, "nix/flake.lock"), lock);
    };
    fs.writeFileSync(flakeFile(), onBranch("nixos-26.11"));
    const next = run("2026-12-01");
    restore();
    expect(next.code).toBe(0);
    expect(next.body).toContain("### NixOS 26.11\n\nSupported until 2027-06-30");
    fs.writeFileSync(flakeFile(), onBranch("nixos-25.11"));
    const unknown = run("2026-12-01");
    restore();
    expect(unknown.code).toBe(0);
    expect(unknown.output).toContain("end-of-support=unknown");
    expect(unknown.body).toContain("Its end of support is not in the table of `scripts/flake-update.sh`");
    fs.writeFileSync(flakeFile(), onBranch("nixos-27.05"));
    const missing = run("2026-12-01");
    restore();
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("nix flake lock failed");
});

test("a marked input whose branch does not exist is refused before anything is written", () => {
    const text = fs.readFileSync(flakeFile(), "utf8");
    fs.writeFileSync(flakeFile(), text.replace("# update: branch main", "# update: branch release-9"));
    const r = run("2026-12-01");
    const after = fs.readFileSync(flakeFile(), "utf8");
    fs.writeFileSync(flakeFile(), text);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("example/tool has no branch 'release-9'");
    expect(after).toBe(text.replace("# update: branch main", "# update: branch release-9"));
});

test("a malformed marker, or one before a URL that names no revision, is bad input naming the line", () => {
    const text = fs.readFileSync(flakeFile(), "utf8");
    fs.writeFileSync(flakeFile(), text.replace("# update: branch main", "# update: newest tool"));
    const bad = run("2026-12-01");
    fs.writeFileSync(flakeFile(), text.replace("    nixpkgs.url", "    # update: branch nixos-26.05\n    nixpkgs.url"));
    const misplaced = run("2026-12-01");
    fs.writeFileSync(flakeFile(), text);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/flake\.nix line \d+: '# update: newest tool'; expected 'branch BRANCH' or 'tag TAG within GLOB'/);
    expect(misplaced.code).toBe(1);
    expect(misplaced.stderr).toContain("a marker needs a URL pinned by revision");
});

test("the project's own flake.nix follows this scheme: nixpkgs by a branch URL or a marker, the tools by tag markers", () => {
    const own = fs.readFileSync(path.join(repo, "nix/flake.nix"), "utf8");
    expect(own).toMatch(/# update: tag v1\.\d+\.\d+ within v1\.\*\n\s*disko = \{/);
    expect(own).toMatch(/# update: tag 1\.\d+\.\d+ within 1\.\*\n\s*nixos-anywhere = \{/);
    expect(own).toMatch(/nixpkgs\.url = "github:NixOS\/nixpkgs\/(nixos-\d\d\.\d\d|[0-9a-f]{40})";/);
});
