// Everything the target replies is data: deploy.sh against a real target (harness/target.sh) whose
// shim answers with hostile values. The test copies scripts/ and appends to the copy's
// target-shim.sh a filter that rewrites the shim's replies to one request (replacing a key's value,
// adding a line, or replacing the status line) before deploy.sh reads them; deploy.sh itself is
// unchanged and sends that shim as it sends the real one. Each case shows that nothing the values
// carry runs on the deploying machine (a marker file is never created), that the deploy refuses with
// a message naming the request and the value, and that the message holds no control character.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import {
  RunResult,
  Target,
  buildClosure,
  copyToTarget,
  leftoverControlMasters,
  repoRoot,
  run,
  runScript,
  scriptEnv,
  startScript,
  startTarget,
  stopTarget,
  waitForAsync,
} from "./harness/target";

jest.setTimeout(180_000);

let target: Target;
let work: string;
let counter = 0;
// Where a hostile value's command substitution would leave its mark on this machine (the target's
// /tmp is this machine's too). Fixed at load time: the cases below are built before beforeAll.
const marker = path.join(os.tmpdir(), `blog-hostile-pwned-${process.pid}`);

/** A rewrite of the replies to one verb: the filter appended to the hostile shim applies it. */
interface Rule {
  verb: string;
  /** replace: KEY's value in every line KEY=...; inject: LINE added before the status line; status: the status line replaced by LINE. */
  mode: "replace" | "inject" | "status";
  key?: string;
  line: string;
}

// Appended to the copy's target-shim.sh (see the file's header).
const HOSTILE_SUFFIX = fs.readFileSync(path.join(__dirname, "harness", "hostile-shim.sh"), "utf8");

/** A copy of scripts/ whose target-shim.sh answers by `rules`; returns the copy's deploy.sh. */
function hostileScripts(rules: Rule[]): string {
  const dir = path.join(work, `scripts-${++counter}`);
  fs.cpSync(path.join(repoRoot, "scripts"), dir, { recursive: true });
  const shim = fs.readFileSync(path.join(dir, "target-shim.sh"), "utf8");
  const last = 'main "$@"\n';
  if (!shim.endsWith(last)) throw new Error('target-shim.sh no longer ends with main "$@"');
  const encoded = rules
    .map((r) => `${r.verb} ${r.mode} ${r.key ?? "-"} ${Buffer.from(r.line).toString("base64")}`)
    .join("\n");
  const text = `${shim.slice(0, -last.length)}hostile_rules=${Buffer.from(encoded).toString("base64")}\n${HOSTILE_SUFFIX}\nhostile_main "$@"\n`;
  fs.writeFileSync(path.join(dir, "target-shim.sh"), text);
  return path.join(dir, "deploy.sh");
}

function freshClosure(opts: { healthy?: boolean } = {}): string {
  return buildClosure({ name: `hostile-${process.pid}-${++counter}`, ...opts });
}

/** A normal deploy with the real scripts: the target runs and boots a fresh system, committed. */
function settle(): void {
  const r = runScript("deploy.sh", scriptEnv(target, { SYSTEM_CLOSURE: freshClosure(), LOCK_WAIT: "30" }));
  if (r.status !== 0) throw new Error(`the setup deploy failed (${r.status}): ${r.stderr}`);
}

function hostileDeploy(rules: Rule[], extra: Record<string, string> = {}, closure = freshClosure()): RunResult {
  const deploy = hostileScripts(rules);
  return run("bash", [deploy], { env: scriptEnv(target, { SYSTEM_CLOSURE: closure, ...extra }), timeoutMs: 120_000 });
}

/** deploy.sh's SSH control masters still running for the target (others' deploys run meanwhile). */
function mastersFor(t: Target): number[] {
  return leftoverControlMasters().filter((pid) => {
    try {
      const args = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      return args.includes(`root@${t.addr4}`) && args.join(" ").includes(`-p ${t.port}`);
    } catch {
      return false; // gone meanwhile
    }
  });
}

/** What every refusal must show: nothing ran here, the reply was refused by name, the log is clean text. */
function expectRefused(r: RunResult, verb: string, status: number, closesItsConnection = true): void {
  expect(fs.existsSync(marker)).toBe(false);
  expect(r.stderr).toContain(`error: the target's reply to '${verb}' is not valid: `);
  expect(r.stderr).not.toContain("Deployed:");
  // No control character in what the deploy prints (escape sequences, a CR, a BEL...).
  expect(r.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
  expect(r.status).toBe(status);
  if (closesItsConnection) expect(mastersFor(target)).toEqual([]);
}

/** A command substitution that creates the marker on whatever machine evaluates it. */
const pwn = () => `$(touch ${marker})`;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "blog-hostile-"));
  target = startTarget();
  settle();
});

afterAll(() => {
  fs.rmSync(marker, { force: true });
  stopTarget(target);
  fs.rmSync(work, { recursive: true, force: true });
});

beforeEach(() => {
  fs.rmSync(marker, { force: true });
});

// Before anything changes on the target: refused with exit 2.
const beforeChange: [string, Rule][] = [
  ["free space: an array subscript that runs a command in (( ))", { verb: "survey", mode: "replace", key: "nix_free", line: `nix_free=SECONDS[${pwn()}]` }],
  ["free space: a number too large for bash's integers", { verb: "survey", mode: "replace", key: "nix_free", line: "nix_free=99999999999999999999999" }],
  ["free space: a number with a leading zero (octal in bash)", { verb: "survey", mode: "replace", key: "nix_free", line: "nix_free=0777777777" }],
  ["/boot's free space: a command substitution", { verb: "survey", mode: "replace", key: "boot_free", line: `boot_free=SECONDS[${pwn()}]` }],
  ["a missing path that is an option", { verb: "survey", mode: "inject", line: "missing=--add-root" }],
  ["a missing path outside /nix/store", { verb: "survey", mode: "inject", line: "missing=/etc/shadow" }],
  ["a missing path the deploy did not ask about", { verb: "survey", mode: "inject", line: "missing=/nix/store/0000000000000000000000000000000a-not-asked" }],
  ["a line that is no KEY=VALUE (a newline inside a value)", { verb: "survey", mode: "inject", line: `touch ${marker}` }],
  ["a failed unit that is an option (the units failed before the deploy)", { verb: "failed-units", mode: "inject", line: "unit=--all" }],
  ["the running system: a command substitution", { verb: "begin", mode: "replace", key: "current", line: `current=${pwn()}` }],
  ["the system profile: an option", { verb: "begin", mode: "replace", key: "profile", line: "profile=-rf" }],
  ["the generation: an array subscript", { verb: "begin", mode: "replace", key: "generation", line: `generation=SECONDS[${pwn()}]` }],
  ["a takeover's summary with escape sequences", { verb: "begin", mode: "inject", line: "takeover=\u001b]0;pwned\u0007\u001b[2Jsomeone" }],
  ["a recovered system outside /nix/store", { verb: "begin", mode: "inject", line: "recovered=/tmp/evil" }],
  ["an unknown key", { verb: "begin", mode: "inject", line: "eval=touch" }],
  ["the status line: not a number", { verb: "begin", mode: "status", line: `@@ 0${pwn()}` }],
  ["the status line: above 255 (256 would read as 0)", { verb: "begin", mode: "status", line: "@@ 256" }],
];

describe("hostile replies before the target changes are refused (exit 2)", () => {
  test.each(beforeChange)("%s", (_name, rule) => {
    const r = hostileDeploy([rule]);
    expectRefused(r, rule.verb, 2);
    expect(r.stderr).toContain("nothing was changed");
  });

  test("the lock holder's summary with escape sequences (a deploy that waits for the lock)", async () => {
    const pause = path.join(work, "pause");
    const holder = startScript("deploy.sh", scriptEnv(target, {
      SYSTEM_CLOSURE: freshClosure(),
      DEPLOY_TEST_PAUSE_AFTER: "begin",
      DEPLOY_TEST_PAUSE_FILE: pause,
    }));
    try {
      expect(await waitForAsync(() => fs.existsSync(pause), 30_000)).toBe(true);
      const r = hostileDeploy([{ verb: "begin", mode: "replace", key: "holder", line: "holder=\u001b[31mdeploy-one\u001b[0m" }], { LOCK_WAIT: "0" });
      expectRefused(r, "begin", 2, false); // the holder's connection is open
    } finally {
      fs.rmSync(pause, { force: true });
      await holder.done;
    }
    expect(mastersFor(target)).toEqual([]);
  });

  test("a build on the target: its output path is a command substitution", () => {
    // In the target's store only: BUILD_ON=remote has the target realise it.
    const closure = freshClosure();
    copyToTarget(target, closure);
    run("nix-store", ["--delete", closure], { timeoutMs: 60_000 });
    const r = hostileDeploy([{ verb: "realise", mode: "replace", key: "out", line: `out=${pwn()}` }], { BUILD_ON: "remote" }, closure);
    expectRefused(r, "realise", 2);
  });

  test("a build on the target: /boot's need is an array subscript", () => {
    const closure = freshClosure();
    copyToTarget(target, closure);
    run("nix-store", ["--delete", closure], { timeoutMs: 60_000 });
    const r = hostileDeploy(
      [{ verb: "boot-needed", mode: "replace", key: "boot_needed", line: `boot_needed=SECONDS[${pwn()}]` }],
      { BUILD_ON: "remote" },
      closure,
    );
    expectRefused(r, "boot-needed", 2);
  });

  test("a secret's hash that is no hash, a name that is a path", () => {
    const r = hostileDeploy([{ verb: "secrets-hashes", mode: "inject", line: `secret=../../etc/${pwn()} 00` }], {
      HOST_SECRETS: "hostileKey",
      HOST_SECRET_hostileKey: `value-${counter}`,
    });
    expectRefused(r, "secrets-hashes", 2);
  });
});

// Once the target may have changed (its rollback timer is armed): refused with exit 4.
const afterChange: [string, Rule, Record<string, string>][] = [
  ["the armed timer: an array subscript", { verb: "prepare", mode: "replace", key: "armed", line: `armed=SECONDS[${pwn()}]` }, {}],
  ["the activated system: a path outside /nix/store", { verb: "activate", mode: "replace", key: "activated", line: "activated=/etc/passwd" }, {}],
  ["a failed unit at the commit that is an option", { verb: "commit", mode: "inject", line: "unit=--all" }, {}],
  ["the activation's exit status: not one it accepts", { verb: "activate", mode: "replace", key: "switch_status", line: `switch_status=SECONDS[${pwn()}]` }, {}],
  ["the committed system: a command substitution", { verb: "commit", mode: "replace", key: "current", line: `current=${pwn()}` }, {}],
  ["the committed generation: an array subscript", { verb: "commit", mode: "replace", key: "generation", line: `generation=SECONDS[${pwn()}]` }, {}],
  ["a delivered set's name: a path", { verb: "secrets-deliver", mode: "inject", line: "set=../../../etc" }, { HOST_SECRETS: "hostileKey" }],
  ["a unit of a delivered secret: an option", { verb: "secrets-deliver", mode: "inject", line: "unit=-H" }, { HOST_SECRETS: "hostileKey" }],
  ["a restarted unit: a command substitution", { verb: "secrets-restart", mode: "inject", line: `restarted=${pwn()}` }, { HOST_SECRETS: "hostileKey" }],
];

describe("hostile replies after the target changed are refused (exit 4)", () => {
  beforeEach(() => settle());

  test.each(afterChange)("%s", (_name, rule, extra) => {
    const secrets: Record<string, string> = extra.HOST_SECRETS ? { HOST_SECRET_hostileKey: `value-${++counter}` } : {};
    const r = hostileDeploy([rule], { ...extra, ...secrets });
    expectRefused(r, rule.verb, 4);
    expect(r.stderr).toContain("an operator must look");
  });

  test("the rolled-back system: a command substitution (an unhealthy system is rolled back)", () => {
    const r = hostileDeploy(
      [{ verb: "rollback", mode: "replace", key: "current", line: `current=${pwn()}` }],
      {},
      freshClosure({ healthy: false }),
    );
    expectRefused(r, "rollback", 4);
  });
});

test("the same deploy with an honest shim passes: the filter itself changes nothing", () => {
  settle();
  const r = hostileDeploy([]);
  expect(r.stderr).toContain("Deployed:");
  expect(r.status).toBe(0);
  expect(fs.existsSync(marker)).toBe(false);
});
