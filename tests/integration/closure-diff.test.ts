// scripts/closure-diff.sh against real closures built offline by the local Nix
// (tests/fixtures/closure-diff/*.nix: /bin/sh derivations, no nixpkgs).
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";

jest.setTimeout(180_000);

const repo = path.resolve(__dirname, "../..");
const script = path.join(repo, "scripts/closure-diff.sh");
const fixtures = path.join(repo, "tests/fixtures/closure-diff");
const flake = `path:${fixtures}`;
const system = `${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux`;

// No substituters (tests/setupNix.ts): everything is built here, and nothing waits on a network.
const env = { ...process.env };

const systems = ["base", "rebuilt", "added", "removed", "bumped", "mixed"] as const;
type SystemName = (typeof systems)[number];
const paths = {} as Record<SystemName, string>;

function nixBuild(args: string[]): string {
  return execFileSync("nix-build", ["--no-out-link", ...args], {
    env,
    encoding: "utf8",
    timeout: 120_000,
    stdio: ["ignore", "pipe", "pipe"],
  }).trim();
}

function closureDiff(args: string[], extraEnv: Record<string, string> = {}) {
  const result = spawnSync("bash", [script, ...args], {
    env: { ...env, ...extraEnv },
    encoding: "utf8",
    timeout: 120_000,
  });
  if (result.error) throw result.error;
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

function diff(from: SystemName, to: SystemName): string {
  const { code, stdout, stderr } = closureDiff([paths[from], paths[to]]);
  expect({ code, stderr }).toEqual({ code: 0, stderr: expect.any(String) });
  return stdout;
}

/** The Markdown table rows, as [package, deployed, this change, size]. */
function rows(markdown: string): string[][] {
  return markdown
    .split("\n")
    .filter((line) => line.startsWith("| ") && !line.startsWith("| Package") && !line.startsWith("| ---"))
    .map((line) => line.split("|").slice(1, -1).map((cell) => cell.trim()));
}

let fakeBin: string;

beforeAll(() => {
  for (const name of systems) paths[name] = nixBuild([path.join(fixtures, `${name}.nix`)]);
  fakeBin = fs.mkdtempSync(path.join(os.tmpdir(), "closure-diff-bin-"));
  // A stand-in for the Pulumi CLI: logs its arguments, answers from the env.
  fs.writeFileSync(
    path.join(fakeBin, "pulumi"),
    [
      "#!/bin/sh",
      'echo "$*" >> "$FAKE_PULUMI_LOG"',
      'if [ "$1 $2 $3" = "config get flake" ]; then echo "$FAKE_PULUMI_FLAKE"; exit 0; fi',
      'if [ "$1 $2 $3" = "config get nixosConfiguration" ]; then [ -n "$FAKE_PULUMI_CONFIGURATION" ] || exit 255; echo "$FAKE_PULUMI_CONFIGURATION"; exit 0; fi',
      'if [ "$1" = config ]; then echo "$FAKE_PULUMI_KEY"; exit 0; fi',
      'if [ -n "$FAKE_PULUMI_ERROR" ]; then echo "$FAKE_PULUMI_ERROR" >&2; exit 255; fi',
      'echo "$FAKE_PULUMI_OUTPUT"',
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
});

afterAll(() => {
  if (fakeBin) fs.rmSync(fakeBin, { recursive: true, force: true });
});

describe("closure-diff.sh OLD NEW", () => {
  test("the fixture systems are distinct store paths", () => {
    expect(new Set(Object.values(paths)).size).toBe(systems.length);
  });

  test("says the closure does not change when both are the same store path", () => {
    const out = diff("base", "base");
    expect(out).toMatch(/^### NixOS closure diff\n\nThe NixOS system closure does not change\.\n/);
    expect(out).not.toContain("<details>");
  });

  test("says only the configuration changes when the system path differs but no package does", () => {
    const out = diff("base", "rebuilt");
    expect(out).toContain("\nNo package changes version or size; the system itself changes (configuration only), so the deploy will run.\n");
    expect(out).not.toContain("does not change");
    expect(out).toContain(paths.rebuilt);
    expect(out).not.toContain("<details>");
  });

  test("counts an added package and lists it with its size", () => {
    const out = diff("base", "added");
    expect(out).toContain("\n**1 package changed** (1 added, 0 removed, 0 upgraded).\n");
    expect(out).toContain("\nClosure size: 128.7 KiB → 160.9 KiB (+32.2 KiB).\n");
    expect(rows(out)).toEqual([["curl", "∅", "8.4.0", "+32.1 KiB"]]);
  });

  test("counts a removed package and the smaller closure", () => {
    const out = diff("base", "removed");
    expect(out).toContain("\n**1 package changed** (0 added, 1 removed, 0 upgraded).\n");
    expect(out).toContain("\nClosure size: 128.7 KiB → 64.5 KiB (-64.2 KiB).\n");
    expect(rows(out)).toEqual([["nginx", "1.24.0", "∅", "-64.2 KiB"]]);
  });

  test("counts a version bump as upgraded", () => {
    const out = diff("base", "bumped");
    expect(out).toContain("\n**1 package changed** (0 added, 0 removed, 1 upgraded).\n");
    expect(out).toContain("\nClosure size: 128.7 KiB → 128.7 KiB (+0 B).\n");
    expect(rows(out)).toEqual([["hello", "2.12", "2.12.1", ""]]);
  });

  test("a version going back is a downgrade, not an upgrade", () => {
    const out = diff("bumped", "base");
    expect(out).toContain("\n**1 package changed** (0 added, 0 removed, 0 upgraded, 1 downgraded).\n");
    expect(rows(out)).toEqual([["hello", "2.12.1", "2.12", ""]]);
  });

  test("summarises several changes and folds the full list into <details>", () => {
    const out = diff("base", "mixed");
    const summary =
      "**3 packages changed** (1 added, 1 removed, 0 upgraded, 1 downgraded; 1 package changed in size only).";
    expect(out).toContain(`\n${summary}\n`);
    expect(out).toContain("\nClosure size: 128.7 KiB → 120.7 KiB (-8.0 KiB).\n");
    expect(rows(out)).toEqual([
      ["curl", "∅", "8.4.0", "+32.1 KiB"],
      ["hello", "2.12", "2.10", ""],
      ["nginx", "1.24.0", "∅", "-64.2 KiB"],
      ["openssl", "", "", "+24.0 KiB"],
    ]);
    // Summary on top, the list folded below it.
    expect(out.indexOf(summary)).toBeLessThan(out.indexOf("<details>"));
    expect(out.indexOf("<details>")).toBeLessThan(out.indexOf("| curl |"));
    expect(out.indexOf("| openssl |")).toBeLessThan(out.indexOf("</details>"));
  });

  test("prints no terminal colour codes (nix colours sizes even into a pipe)", () => {
    const out = diff("base", "mixed");
    expect(out).not.toMatch(/\x1b/);
  });

  test("rejects arguments that are not two store paths", () => {
    const none = closureDiff([]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("give two store paths");
    const notStore = closureDiff(["/tmp/a", paths.base]);
    expect(notStore.code).toBe(1);
    expect(notStore.stderr).toContain("OLD is not a store path: '/tmp/a'");
  });
});

describe("closure-diff.sh fetching the deployed closure", () => {
  // A system no other test uses, so taking it out of the store harms nothing.
  const unique = `fetch-test-${process.pid}-${Date.now()}`;
  let deployed: string;
  let otherStore: string;

  beforeAll(() => {
    deployed = nixBuild([
      "-E",
      `let lib = import ${fixtures}/lib.nix {}; in lib.nixosSystem { packages = [ (lib.hello "2.12") lib.nginx ]; extra = "${unique}"; }`,
    ]);
    otherStore = fs.mkdtempSync(path.join(os.tmpdir(), "closure-diff-store-"));
    execFileSync("nix", ["copy", "--no-check-sigs", "--to", otherStore, deployed], { env, timeout: 60_000, stdio: "ignore" });
    execFileSync("nix-store", ["--delete", deployed], { env, timeout: 60_000, stdio: "ignore" });
  });

  afterAll(() => {
    if (otherStore) fs.rmSync(otherStore, { recursive: true, force: true });
  });

  test("fails with exit 2 when the deployed closure is nowhere to be had", () => {
    const { code, stderr } = closureDiff([deployed, paths.base]);
    expect(code).toBe(2);
    expect(stderr).toContain("is not in the local store and no substituter has it (use --from)");
  });

  test("copies the deployed closure from --from, then diffs it", () => {
    const { code, stdout, stderr } = closureDiff(["--from", otherStore, deployed, paths.base]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: expect.stringContaining(`copying ${deployed} from`) });
    expect(stdout).toContain("\n**1 package changed** (1 added, 0 removed, 0 upgraded).\n");
    expect(rows(stdout)).toEqual([["openssl", "∅", "3.0.13", "+24.1 KiB"]]);
  });
});

describe("closure-diff.sh --stack-output --flake-attr", () => {
  let log: string;
  const run = (extraEnv: Record<string, string>, attr = `${flake}#systems.${system}.bumped`) =>
    closureDiff(["--stack", "production", "--stack-output", "systemClosure", "--flake-attr", attr], {
      PATH: `${fakeBin}:${process.env.PATH}`,
      FAKE_PULUMI_LOG: log,
      ...extraEnv,
    });

  beforeEach(() => {
    log = path.join(fakeBin, `calls-${Date.now()}.log`);
  });

  test("diffs the stack's deployed system against the flake's build", () => {
    const { code, stdout } = run({ FAKE_PULUMI_OUTPUT: paths.base });
    expect(code).toBe(0);
    expect(fs.readFileSync(log, "utf8")).toBe("stack output systemClosure --show-secrets --stack production\n");
    expect(stdout).toContain("\n**1 package changed** (0 added, 0 removed, 1 upgraded).\n");
    expect(stdout).toContain(`this change: \`${paths.bumped}\``);
  });

  test("says so when the stack has deployed nothing yet", () => {
    const { code, stdout } = run({
      FAKE_PULUMI_ERROR: "error: current stack does not have output property 'systemClosure'",
    });
    expect(code).toBe(0);
    expect(stdout).toContain(
      "Nothing is deployed yet (the stack has no `systemClosure` output): the whole system is new, closure size 128.7 KiB.",
    );
  });

  test("fails with exit 2 and pulumi's message when the stack cannot be read", () => {
    const { code, stdout, stderr } = run({ FAKE_PULUMI_ERROR: "error: failed to decrypt configuration" });
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain("error: failed to decrypt configuration");
  });

  test("fails with exit 2 when the flake attribute does not build", () => {
    const { code, stderr } = run({ FAKE_PULUMI_OUTPUT: paths.base }, `${flake}#systems.${system}.nonexistent`);
    expect(code).toBe(2);
    expect(stderr).toContain("nix build");
  });

  test("refuses a stack output that is not exactly a store path (exit 1), showing it as text", () => {
    const { code, stdout, stderr } = run({ FAKE_PULUMI_OUTPUT: "/nix/store/../../etc/passwd \u001b[2J" });
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toContain("OLD is not a store path: '(not printable)'");
  });
});

describe("closure-diff.sh --base-flake-attr: the deployed system built from the base commit, no key, no server", () => {
  const unique = `base-test-${process.pid}-${Date.now()}`;
  let baseFlake: string;
  let deployed: string;
  let log: string;
  const run = (deployedPath: string, baseAttr: string) =>
    closureDiff(
      ["--stack", "production", "--stack-output", "systemClosure", "--flake-attr", `${flake}#systems.${system}.bumped`, "--base-flake-attr", baseAttr],
      { PATH: `${fakeBin}:${process.env.PATH}`, FAKE_PULUMI_LOG: log, FAKE_PULUMI_OUTPUT: deployedPath },
    );

  beforeAll(() => {
    // A flake whose system only it builds: what "the base commit" builds and the stack deployed.
    baseFlake = fs.mkdtempSync(path.join(os.tmpdir(), "closure-diff-base-"));
    fs.copyFileSync(path.join(fixtures, "lib.nix"), path.join(baseFlake, "lib.nix")); // a flake imports its own files only
    fs.writeFileSync(
      path.join(baseFlake, "flake.nix"),
      `{ outputs = { self }: { systems.${system}.deployed = let lib = import ./lib.nix { system = "${system}"; }; in lib.nixosSystem { packages = [ (lib.hello "2.12") lib.nginx ]; extra = "${unique}"; }; }; }\n`,
    );
    deployed = execFileSync("nix", ["build", "--no-link", "--json", `path:${baseFlake}#systems.${system}.deployed`], { env, encoding: "utf8", timeout: 120_000 })
      .match(/"out":"([^"]+)"/)![1];
    execFileSync("nix-store", ["--delete", deployed], { env, timeout: 60_000, stdio: "ignore" });
    log = path.join(fakeBin, `base-calls-${Date.now()}.log`);
  });

  afterAll(() => {
    if (baseFlake) fs.rmSync(baseFlake, { recursive: true, force: true });
  });

  test("the base commit builds the deployed system: it is built here and the diff is against it", () => {
    const { code, stdout, stderr } = run(deployed, `path:${baseFlake}#systems.${system}.deployed`);
    expect({ code, stderr }).toEqual({ code: 0, stderr: expect.stringContaining(`the base commit builds the deployed system: ${deployed}`) });
    expect(stdout).toContain("\n**2 packages changed** (1 added, 0 removed, 1 upgraded).\n");
    expect(stdout).toContain(`<sub>deployed: \`${deployed}\` · this change: \`${paths.bumped}\`</sub>`);
    expect(stdout).not.toContain("is not what the base commit builds");
  });

  test("the base commit builds another system: the section says so and compares with it", () => {
    const gone = "/nix/store/0000000000000000000000000000000a-nixos-system-blog-gone";
    const { code, stdout } = run(gone, `${flake}#systems.${system}.base`);
    expect(code).toBe(0);
    expect(stdout).toContain(`The deployed system (\`${gone}\`) is not what the base commit builds`);
    expect(stdout).toContain("\n**1 package changed** (0 added, 0 removed, 1 upgraded).\n");
    expect(stdout).toContain(`<sub>base commit: \`${paths.base}\` · this change: \`${paths.bumped}\`</sub>`);
  });
});

test("closure-diff.sh is shellcheck-clean", () => {
  // -x: it sources scripts/lib/patterns.sh (the store-path pattern it shares with the deploy).
  const result = spawnSync("shellcheck", ["-x", "--source-path=SCRIPTDIR", script], { encoding: "utf8", timeout: 60_000, cwd: repo });
  expect(result.stdout + result.stderr).toBe("");
  expect(result.status).toBe(0);
});

// The preview workflow's step that runs the script and hands the comment on,
// run here as GitHub would run it (bash -e, the step's env, GitHub's files).
describe("preview.yml's closure diff step", () => {
  type Step = { id?: string; run?: string };
  const workflow = parse(fs.readFileSync(path.join(repo, ".github/workflows/preview.yml"), "utf8"));
  const step = (workflow.jobs.preview.steps as Step[]).find((s) => s.id === "closure")!;
  let runner: string;

  beforeEach(() => {
    runner = fs.mkdtempSync(path.join(os.tmpdir(), "closure-diff-runner-"));
  });
  afterEach(() => fs.rmSync(runner, { recursive: true, force: true }));

  function runStep(extraEnv: Record<string, string>) {
    const files = {
      GITHUB_OUTPUT: path.join(runner, "output"),
      GITHUB_STEP_SUMMARY: path.join(runner, "summary"),
      RUNNER_TEMP: runner,
    };
    const result = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", step.run!], {
      cwd: repo,
      encoding: "utf8",
      timeout: 120_000,
      env: {
        ...env,
        ...files,
        PATH: `${fakeBin}:${process.env.PATH}`,
        FAKE_PULUMI_LOG: path.join(runner, "pulumi.log"),
        PULUMI_STACK: "production",
        FAKE_PULUMI_FLAKE: flake,
        FAKE_PULUMI_CONFIGURATION: "added",
        RUN_URL: "https://github.com/example/blog/actions/runs/1",
        BASE_SHA: "",
        ...extraEnv,
      },
    });
    if (result.error) throw result.error;
    const read = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "");
    const comment = path.join(runner, "closure-diff.md");
    return {
      code: result.status,
      output: read(files.GITHUB_OUTPUT),
      summary: read(files.GITHUB_STEP_SUMMARY),
      comment: read(comment),
      commentPath: comment,
      log: read(path.join(runner, "pulumi.log")),
      stdout: result.stdout,
      stderr: result.stderr,
    };
  }

  test("writes the comment file, names it in the step output and adds it to the job summary", () => {
    const run = runStep({ FAKE_PULUMI_OUTPUT: paths.base });
    expect(run.code).toBe(0);
    expect(run.output).toBe(`comment=${run.commentPath}\n`);
    expect(run.comment).toContain("\n**1 package changed** (1 added, 0 removed, 0 upgraded).\n");
    expect(run.summary).toBe(run.comment);
  });

  test("builds the stack's own nixosConfiguration, else the default Pulumi.yaml declares", () => {
    const configured = runStep({ FAKE_PULUMI_OUTPUT: paths.base, FAKE_PULUMI_CONFIGURATION: "mixed" });
    expect(configured.code).toBe(0);
    expect(configured.comment).toContain(paths.mixed);
    expect(configured.log).toContain("config get nixosConfiguration --stack production\n");

    const unset = runStep({ FAKE_PULUMI_OUTPUT: paths.base, FAKE_PULUMI_CONFIGURATION: "" });
    expect(unset.code).toBe(2);
    expect(unset.stderr).toContain('nixosConfigurations."blog".config.system.build.toplevel');
  });

  test("reads no key and never connects to the server (no sshPrivateKey, no --from)", () => {
    const run = runStep({ FAKE_PULUMI_OUTPUT: paths.base, FAKE_PULUMI_KEY: "FAKE-PRIVATE-KEY-MATERIAL" });
    expect(run.code).toBe(0);
    expect(run.log).not.toContain("sshPrivateKey");
    expect(step.run).not.toContain("--from");
    expect(step.run).not.toContain("NIX_SSHOPTS");
    expect(run.stdout + run.stderr + run.summary + run.comment).not.toContain("FAKE-PRIVATE-KEY-MATERIAL");
  });

  test("with the base commit in the checkout: a clone of it, and its copy of the stack's flake as --base-flake-attr", () => {
    // A repository of its own, whose closure-diff.sh only records its arguments.
    const repoDir = path.join(runner, "repo");
    fs.mkdirSync(path.join(repoDir, "scripts"), { recursive: true });
    fs.copyFileSync(path.join(repo, "Pulumi.yaml"), path.join(repoDir, "Pulumi.yaml"));
    fs.writeFileSync(path.join(repoDir, "scripts/closure-diff.sh"), 'printf "%s\\n" "$@"\n');
    const git = (...args: string[]) =>
      execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd: repoDir, encoding: "utf8" }).trim();
    git("init", "--quiet");
    git("add", ".");
    git("commit", "--quiet", "-m", "base");
    const baseSha = git("rev-parse", "HEAD");
    const result = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", step.run!], {
      cwd: repoDir,
      encoding: "utf8",
      timeout: 60_000,
      env: {
        ...env,
        PATH: `${fakeBin}:${process.env.PATH}`,
        GITHUB_OUTPUT: path.join(runner, "output"),
        GITHUB_STEP_SUMMARY: path.join(runner, "summary"),
        RUNNER_TEMP: runner,
        FAKE_PULUMI_LOG: path.join(runner, "pulumi.log"),
        FAKE_PULUMI_FLAKE: "./nix",
        FAKE_PULUMI_CONFIGURATION: "blog",
        PULUMI_STACK: "production",
        BASE_SHA: baseSha,
        RUN_URL: "https://github.com/example/blog/actions/runs/1",
      },
    });
    expect(result.status).toBe(0);
    const args = fs.readFileSync(path.join(runner, "closure-diff.md"), "utf8").trim().split("\n");
    const toplevel = '#nixosConfigurations."blog".config.system.build.toplevel';
    expect(args).toEqual([
      "--stack", "production", "--stack-output", "systemClosure",
      "--flake-attr", `./nix${toplevel}`,
      "--base-flake-attr", `${runner}/base/nix${toplevel}`,
    ]);
    expect(execFileSync("git", ["rev-parse", "HEAD"], { cwd: path.join(runner, "base"), encoding: "utf8" }).trim()).toBe(baseSha);
  });

  test("when the diff fails, the comment says so and links the log, and the step fails", () => {
    const run = runStep({ FAKE_PULUMI_ERROR: "error: failed to decrypt configuration" });
    expect(run.code).toBe(2);
    expect(run.output).toBe(`comment=${run.commentPath}\n`);
    expect(run.comment).toBe(
      "### NixOS closure diff\n\nThe closure diff failed (exit 2): see the [job log](https://github.com/example/blog/actions/runs/1).\n",
    );
  });
});
