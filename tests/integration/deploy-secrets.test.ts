// deploy.sh's host secrets (HOST_SECRETS, HOST_SECRET_<name>) and its pinned health check
// (HEALTH_PINNED_KEY), against real targets (harness/target.sh: containers with systemd as PID 1)
// running test systems whose services take the secrets as credentials (LoadCredential=) and record
// what they got at each start (harness/service.sh). The tests read the delivered secrets in the
// target's root as this machine sees it. The tests on the shared target run in order; each states
// what it starts from.
import { spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import {
  ClosureArgs,
  RunResult,
  Target,
  buildClosure,
  currentSystem,
  generation,
  killGroup,
  leftoverControlMasters,
  onTarget,
  rebootTarget,
  repoRoot,
  run,
  runScript,
  scriptEnv,
  serviceRecord,
  sshConnections,
  sshdPid,
  startScript,
  startTarget,
  stopTarget,
  targetPath,
  unitState,
  waitFor,
  waitForAsync,
} from "./harness/target";

jest.setTimeout(180_000);

// The services of the test systems that take secrets: the backend both, a web server the
// certificate (each system's etc/blog/secret-units says so, as secrets.nix writes it).
const SERVICES = { "blog-backend": ["backendApiKey", "originCert"], nginx: ["originCert"] };

const targets: Target[] = [];
const background: number[] = [];
let work: string;
let closures: Record<string, string>;
let t: Target;

/** A test system (harness/closures.nix) whose services take the secrets (SERVICES, unless given). */
function buildSecretsClosure(name: string, opts: Partial<ClosureArgs> = {}): string {
  return buildClosure({ name, services: SERVICES, ...opts });
}

function secretsTarget(opts: Parameters<typeof startTarget>[0] = {}): Target {
  const target = startTarget(opts);
  targets.push(target);
  return target;
}

const varLib = (target: Target) => path.join(target.root, "var/lib");

/** A secret's bytes as the target holds them (undefined: no such secret). */
function secretOf(target: Target, name: string): Buffer | undefined {
  const file = path.join(varLib(target), "blog-secrets", name);
  return fs.existsSync(file) ? fs.readFileSync(file) : undefined;
}

function secretNames(target: Target): string[] {
  const dir = path.join(varLib(target), "blog-secrets");
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
}

/** The secret sets kept on the target (the live one, plus the previous one while undecided). */
function secretSets(target: Target): string[] {
  const dir = path.join(varLib(target), "blog-secrets.d");
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.startsWith("set-")).sort() : [];
}

/** Whether a delivery is undecided (its record, which a commit or a rollback removes). */
function pendingDelivery(target: Target): boolean {
  return fs.existsSync(path.join(varLib(target), "blog-secrets.d", "pending"));
}

const sha = (value: string) => crypto.createHash("sha256").update(value).digest("hex");

/** What a service runs with now: its invocation and the sha256 of each credential (undefined: not running). */
function running(target: Target, service: string) {
  return serviceRecord(target, service);
}

/** The credentials a service should hold for these values (of the secrets SERVICES gives it). */
function credentialsOf(service: keyof typeof SERVICES, values: Record<string, string>): Record<string, string> {
  return Object.fromEntries(SERVICES[service].map((name) => [name, sha(values[name])]));
}

/** The units the deploy's restart step reports it restarted. */
function restartedBy(r: RunResult): string[] {
  const line = r.stderr.split("\n").find((l) => l.includes("restarted: ") && l.includes("left alone")) ?? "";
  const m = /restarted: (.*?); left alone/.exec(line);
  return m && m[1] !== "none" ? m[1].split(" ").sort() : [];
}

/** HOST_SECRETS and one HOST_SECRET_<name> per secret. */
function secretsEnv(values: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { HOST_SECRETS: Object.keys(values).join(" ") };
  for (const [name, value] of Object.entries(values)) env[`HOST_SECRET_${name}`] = value;
  return env;
}

function expectSecrets(target: Target, values: Record<string, string>): void {
  expect(secretNames(target)).toEqual(Object.keys(values).sort());
  for (const [name, value] of Object.entries(values)) {
    expect(secretOf(target, name)?.equals(Buffer.from(value, "utf8"))).toBe(true);
  }
}

/** deploy.sh's SSH control masters still running for this target (others' deploys run meanwhile). */
function mastersFor(target: Target): number[] {
  return leftoverControlMasters(target);
}

// Every deploy, whatever its outcome, closes its SSH connection on exit.
function deployTo(target: Target, closure: string, extra: Record<string, string> = {}): RunResult {
  const r = runScript("deploy.sh", scriptEnv(target, { SYSTEM_CLOSURE: closure, ...extra }));
  expect(mastersFor(target)).toEqual([]);
  return r;
}

function inBackground(target: Target, closure: string, extra: Record<string, string>) {
  const deploy = startScript("deploy.sh", scriptEnv(target, { SYSTEM_CLOSURE: closure, ...extra }));
  background.push(deploy.pid);
  return deploy;
}

const token = () => crypto.randomBytes(12).toString("hex");

/** Values with everything a value may hold: spaces, quotes, $, %, backslashes, UTF-8, newlines. */
function freshValues(): Record<string, string> {
  return {
    backendApiKey: `key-${token()} 'single' "double" $HOME %s %% \\n \\ ünïcödé`, // no trailing newline
    originCert: `-----BEGIN CERTIFICATE-----\nMIIB${token()}\n${token()}+/=\n\n-----END CERTIFICATE-----\n`,
  };
}

/** Every string that would give a value away: its random parts, its base64, its sha256. */
function giveaways(values: Record<string, string>): string[] {
  const out: string[] = [];
  for (const value of Object.values(values)) {
    out.push(...(value.match(/[0-9a-f]{24}/g) ?? []));
    out.push(Buffer.from(value).toString("base64"));
    out.push(crypto.createHash("sha256").update(value).digest("hex"));
  }
  return out;
}

/** Command lines of every process on this machine (the targets' included) that contain a needle. */
function commandLinesWith(needles: string[]): string[] {
  const hits: string[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "latin1").replace(/\0/g, " ");
    } catch {
      continue;
    }
    if (needles.some((n) => cmdline.includes(Buffer.from(n).toString("latin1")))) hits.push(`pid ${entry}`);
  }
  return hits;
}

// strace, where installed, records every execve's arguments: a value on any command line, however
// short-lived, is then seen for sure. Without it the check polls /proc (best effort).
const strace = run("sh", ["-c", "command -v strace || true"]).stdout.trim();
const execveTrace = (out: string) => [strace, "-f", "-qq", "-e", "trace=execve", "-s", "1000000", "-o", out];

/**
 * `bash -x scripts/deploy.sh` in the background (under strace when there is one, its execve log in
 * execLog): its output, the trace included, and its result.
 */
function tracedDeploy(env: NodeJS.ProcessEnv, execLog: string): { pid: number; done: Promise<RunResult> } {
  const command = ["bash", "-x", path.join(repoRoot, "scripts", "deploy.sh")];
  const [file, ...args] = strace ? [...execveTrace(execLog), ...command] : command;
  const child = spawn(file, args, {
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => killGroup(child.pid ?? 0), 120_000);
  const done = new Promise<RunResult>((resolve) =>
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    }),
  );
  background.push(child.pid ?? 0);
  return { pid: child.pid ?? 0, done };
}

function pauseFile(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), "blog-pause-")), "paused");
}

/** Whether the given step texts appear in a deploy's output in this order. */
function inOrder(text: string, steps: string[]): boolean {
  const at = steps.map((s) => text.indexOf(s));
  return at.every((i) => i >= 0) && at.every((i, k) => k === 0 || at[k - 1] < i);
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "blog-secrets-test-"));
  closures = {
    // No service takes a secret yet: it runs without any.
    base: buildSecretsClosure("secrets-base", { services: {} }),
    next: buildSecretsClosure("secrets-next", { changedDep: 1 }),
    other: buildSecretsClosure("secrets-other", { changedDep: 2 }),
    // The backend alone, with the key only; then nothing that takes a secret.
    lean: buildSecretsClosure("secrets-lean", { changedDep: 4, services: { "blog-backend": ["backendApiKey"] } }),
    bare: buildSecretsClosure("secrets-bare", { changedDep: 5, services: {} }),
    unhealthy: buildSecretsClosure("secrets-unhealthy", { healthy: false }),
    unconfirmed: buildSecretsClosure("secrets-unconfirmed", { changedDep: 3 }),
  };
  t = secretsTarget();
  const r = deployTo(t, closures.base);
  if (r.status !== 0) throw new Error(`deploying the base system failed: ${r.stderr}`);
});

// The targets a test starts stop when it ends (each boots a systemd: few at a time, whatever else
// runs on the machine); those a beforeAll starts, at the end.
let mark = 0;
beforeEach(() => {
  mark = targets.length;
});

afterEach(() => {
  for (const pid of background.splice(0)) killGroup(pid);
  for (const target of targets.splice(mark)) {
    for (const pid of mastersFor(target)) killGroup(pid);
    stopTarget(target);
  }
});

afterAll(() => {
  for (const target of targets) for (const pid of mastersFor(target)) killGroup(pid);
  for (const target of targets.splice(0)) stopTarget(target);
  fs.rmSync(work, { recursive: true, force: true });
});

test("bad secret input is refused with exit 1, naming the name or variable and never a value", () => {
  const value = `value-${token()}`;
  const badName = deployTo(t, closures.next, { HOST_SECRETS: "backendApiKey bad-name", HOST_SECRET_backendApiKey: value });
  const tooLong = deployTo(t, closures.next, { HOST_SECRETS: `a${"b".repeat(64)}` });
  const missing = deployTo(t, closures.next, { HOST_SECRETS: "backendApiKey originCert", HOST_SECRET_backendApiKey: value });
  const badPin = deployTo(t, closures.next, { HEALTH_PINNED_KEY: "sha256//not-a-pin" });
  const pinOverHttp = deployTo(t, closures.next, { HEALTH_PINNED_KEY: `sha256//${"A".repeat(43)}=` });

  expect(badName.status).toBe(1);
  expect(badName.stderr).toContain("HOST_SECRETS lists 'bad-name', which is not a valid secret name");
  expect(tooLong.status).toBe(1);
  expect(missing.status).toBe(1);
  expect(missing.stderr).toContain("HOST_SECRET_originCert is not set; HOST_SECRETS lists 'originCert'");
  expect(badPin.status).toBe(1);
  expect(badPin.stderr).toContain("HEALTH_PINNED_KEY='sha256//not-a-pin' is not valid");
  expect(pinOverHttp.status).toBe(1);
  expect(pinOverHttp.stderr).toContain("is not https://");
  for (const r of [badName, missing]) expect(r.stdout + r.stderr).not.toContain(value);
  expect(currentSystem(t)).toBe(closures.base);
  expect(secretNames(t)).toEqual([]);
});

let v1: Record<string, string>;

test("secrets go with a new closure, after the copy and before the activation: 0400 root files in a 0700 directory, byte-exact; the services that take them run with them", () => {
  v1 = freshValues();

  const r = deployTo(t, closures.next, secretsEnv(v1));

  expect(r.stderr).toContain("Deployed:");
  expect(r.status).toBe(0);
  expect(r.stderr).toContain("secrets: added backendApiKey originCert");
  expect(
    inOrder(r.stderr, ["Copying the closure", "Arming the target's rollback", "Delivering the secrets", "switch-to-configuration test", "Restarting the units", "Checking health", "Committing"]),
  ).toBe(true);
  expectSecrets(t, v1);
  expect(onTarget(t, "stat -L -c '%a %U %G' /var/lib/blog-secrets /var/lib/blog-secrets/backendApiKey /var/lib/blog-secrets/originCert /var/lib/blog-secrets.d")).toBe(
    ["700 root root", "400 root root", "400 root root", "700 root root"].join("\n"),
  );
  expect(secretSets(t)).toHaveLength(1); // committed: no previous set, no pending record
  expect(pendingDelivery(t)).toBe(false);
  expect(restartedBy(r)).toEqual(["blog-backend.service", "nginx.service"]);
  expect(running(t, "blog-backend")?.credentials).toEqual(credentialsOf("blog-backend", v1));
  expect(running(t, "nginx")?.credentials).toEqual(credentialsOf("nginx", v1));
  expect(currentSystem(t)).toBe(closures.next);
});

test("the same closure with the same secrets is still nothing to do, over one connection", () => {
  const before = sshConnections(t);

  const r = deployTo(t, closures.next, secretsEnv(v1));

  expect(r.status).toBe(0);
  expect(r.stderr).toContain("Nothing to change");
  expect(r.stderr).not.toContain("Delivering");
  expect(sshConnections(t) - before).toBe(1);
  expectSecrets(t, v1);
});

let v2: Record<string, string>;

test("a changed value with the closure unchanged is a real deploy: delivered, its units restarted, health-checked, committed", () => {
  v2 = { ...v1, backendApiKey: `rotated-${token()}` };
  const before = { connections: sshConnections(t), generation: generation(t), nginx: running(t, "nginx")?.invocation };

  const r = deployTo(t, closures.next, secretsEnv(v2));

  expect(r.stderr).toContain("Deployed:");
  expect(r.status).toBe(0);
  expect(r.stderr).toContain("only the secrets change");
  expect(r.stderr).toContain("secrets: changed backendApiKey");
  expect(inOrder(r.stderr, ["Taking the target's deploy lock", "Delivering the secrets", "Restarting the units", "Checking health", "Committing"])).toBe(true);
  expect(r.stderr).not.toMatch(/Copying the closure|Activating/);
  expect(sshConnections(t) - before.connections).toBe(1);
  expectSecrets(t, v2);
  expect(restartedBy(r)).toEqual(["blog-backend.service"]); // originCert's other unit was not touched
  expect(running(t, "blog-backend")?.credentials).toEqual(credentialsOf("blog-backend", v2));
  expect(running(t, "nginx")?.invocation).toBe(before.nginx);
  expect(generation(t)).toBe(before.generation);
  expect(currentSystem(t)).toBe(closures.next);
  expect(secretSets(t)).toHaveLength(1);
});

test("a changed secret's units that are not running are left alone", () => {
  onTarget(t, "systemctl stop nginx.service");
  const v = { ...v2, originCert: `-----BEGIN CERTIFICATE-----\n${token()}\n-----END CERTIFICATE-----\n` };

  const r = deployTo(t, closures.next, secretsEnv(v));
  if (r.status === 0) v2 = v;

  expect(r.status).toBe(0);
  expect(r.stderr).toContain("secrets: changed originCert");
  expect(r.stderr).toContain("left alone (not running): nginx.service inactive");
  expect(restartedBy(r)).toEqual(["blog-backend.service"]);
  expect(unitState(t, "nginx.service")).toBe("inactive");
  expect(running(t, "blog-backend")?.credentials).toEqual(credentialsOf("blog-backend", v));
  expectSecrets(t, v);
  onTarget(t, "systemctl start nginx.service");
});

test("secrets never show: not in the output, not in bash -x's trace, not on a command line, not in a file outside the set", async () => {
  const v3 = freshValues();
  const needles = giveaways(v3);
  const pause = pauseFile();
  const execLogs = { deployer: path.join(work, "execve-deployer.log"), target: path.join(work, "execve-target.log") };
  // The target's side: every process its sshd starts (sessions, the shim and its tools).
  let targetTracer: number | undefined;
  const sshd = sshdPid(t);
  if (strace) {
    const tracer = spawn(strace, [...execveTrace(execLogs.target).slice(1), "-p", String(sshd)], { detached: true, stdio: "ignore" });
    targetTracer = tracer.pid;
    background.push(tracer.pid ?? 0);
    const tracerPid = () => /TracerPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${sshd}/status`, "utf8"))?.[1];
    expect(await waitForAsync(() => tracerPid() === String(tracer.pid), 10_000)).toBe(true);
  }
  const deploy = tracedDeploy(
    scriptEnv(t, { SYSTEM_CLOSURE: closures.next, ...secretsEnv(v3), DEPLOY_TEST_PAUSE_AFTER: "deliver", DEPLOY_TEST_PAUSE_FILE: pause }),
    execLogs.deployer,
  );
  let finished = false;
  const seen: string[] = [];
  const watching = (async () => {
    while (!finished) {
      seen.push(...commandLinesWith(needles));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  deploy.done.then(() => (finished = true));

  // The needles, for grep -f, in this test's own 0700 directory.
  const patterns = path.join(work, "needles");
  fs.writeFileSync(patterns, needles.join("\n") + "\n", { mode: 0o600 });
  // Everything the target wrote to its disk (its overlay's upper layer) but the secret sets
  // themselves, and the deploy's state in its /run.
  const filesWithNeedles = (where: string) =>
    run("sh", ["-c", `grep -rlsF -f ${patterns} --exclude-dir=blog-secrets.d ${where} || true`]).stdout.trim();

  expect(await waitForAsync(() => fs.existsSync(pause), 60_000)).toBe(true);
  expect(mastersFor(t)).toHaveLength(1); // its connection, as deployTo's check sees one
  // Delivered, not yet committed: the spool is gone, and nothing outside the set holds a value.
  expect(fs.readdirSync(targetPath(t, "/run/blog-deploy")).filter((f) => /^secrets\.[A-Za-z0-9]{6}$/.test(f))).toEqual([]);
  expect(filesWithNeedles(targetPath(t, "/run/blog-deploy"))).toBe("");
  expect(filesWithNeedles(path.join(t.dir, "ov/upper"))).toBe("");
  expect(secretSets(t)).toHaveLength(2); // the new set, and the previous one until the commit
  expect(pendingDelivery(t)).toBe(true);
  fs.rmSync(pause);
  const r = await deploy.done;
  await watching;
  if (targetTracer) process.kill(targetTracer, "SIGTERM"); // strace detaches
  if (r.status === 0) v2 = v3;

  expect(r.stderr).toMatch(/^\++ .*build_secrets_payload$/m); // the trace reached the delivery
  expect(r.status).toBe(0);
  expect(needles.filter((n) => (r.stdout + r.stderr).includes(n))).toEqual([]);
  if (strace) {
    expect(await waitForAsync(() => fs.existsSync(execLogs.target) && !/TracerPid:\s+[1-9]/.test(fs.readFileSync(`/proc/${sshd}/status`, "utf8")), 10_000)).toBe(true);
    const execs = fs.readFileSync(execLogs.deployer, "utf8") + fs.readFileSync(execLogs.target, "utf8");
    expect(execs).toMatch(/execve\("[^"]*ssh"/); // it saw the deployer's commands
    expect(execs).toMatch(/execve\("[^"]*head", \["head", "-c"/); // and the shim's, on the target
    expect(needles.filter((n) => execs.includes(n))).toEqual([]);
  }
  expect(seen).toEqual([]);
  // Its own work directory (on a tmpfs: scripts/lib/common.sh) is gone too.
  expect(filesWithNeedles("/dev/shm/blog-deploy.* /run/user/*/blog-deploy.* /tmp/blog-deploy.*")).toBe("");
  expect(filesWithNeedles(targetPath(t, "/run/blog-deploy"))).toBe("");
  expectSecrets(t, v3);
});

test("a secret the new system no longer uses, left out of HOST_SECRETS, is removed from the host; an empty HOST_SECRETS removes them all", () => {
  const only = { backendApiKey: v2.backendApiKey };

  // The new system's backend takes the key only, and nothing takes the certificate.
  const fewer = deployTo(t, closures.lean, secretsEnv(only));

  expect(fewer.stderr).toContain("Deployed:");
  expect(fewer.status).toBe(0);
  expect(fewer.stderr).toContain("secrets: removed originCert");
  expectSecrets(t, only);
  expect(restartedBy(fewer)).toEqual(["blog-backend.service"]); // nginx went with the old system: left alone
  expect(fewer.stderr).toContain("nginx.service inactive");
  expect(running(t, "blog-backend")?.credentials).toEqual({ backendApiKey: sha(v2.backendApiKey) });

  const none = deployTo(t, closures.bare, { HOST_SECRETS: "" });

  expect(none.stderr).toContain("Deployed:");
  expect(none.status).toBe(0);
  expect(none.stderr).toContain("secrets: removed backendApiKey");
  expect(secretNames(t)).toEqual([]);
  expect(secretSets(t)).toHaveLength(1); // an empty set, live

  const back = deployTo(t, closures.next, secretsEnv(v2));
  expect(back.status).toBe(0);
  expect(back.stderr).toContain("secrets: added backendApiKey originCert");
  expectSecrets(t, v2);
  expect(running(t, "blog-backend")?.credentials).toEqual(credentialsOf("blog-backend", v2));
});

test("HOST_SECRETS unset leaves the target's secrets alone, with or without a new closure", () => {
  const setBefore = secretSets(t);

  const r = deployTo(t, closures.other);

  expect(r.stderr).toContain("Deployed:");
  expect(r.status).toBe(0);
  expect(r.stderr).not.toMatch(/Comparing the target's secrets|Delivering the secrets|Restarting the units|secrets:/);
  expectSecrets(t, v2);
  expect(secretSets(t)).toEqual(setBefore);
  expect(running(t, "blog-backend")?.credentials).toEqual(credentialsOf("blog-backend", v2));
});

test("a failing health check after a secret change (closure unchanged) brings the previous values back and restarts the same units (exit 3)", async () => {
  // The site breaks with that value of the key, as a backend would.
  const server = http.createServer((_req, res) => {
    const broken = secretOf(t, "backendApiKey")?.toString() === "breaks-the-site";
    res.writeHead(broken ? 503 : 200, { "Content-Type": "text/plain" });
    res.end(broken ? "backend cannot authenticate\n" : "blog ok\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const before = running(t, "blog-backend")?.invocation;
  try {
    const r = await inBackground(t, closures.other, {
      ...secretsEnv({ ...v2, backendApiKey: "breaks-the-site" }),
      HEALTH_URL: `http://127.0.0.1:${port}/`,
      HEALTH_TIMEOUT: "3",
    }).done;

    expect(r.stderr).toMatch(/deploy failed: health check: http:\/\/127\.0\.0\.1:\d+\/ did not pass within 3s/);
    expect(r.stderr).toContain("its secrets are the set from before the deploy again");
    expect(r.status).toBe(3);
  } finally {
    server.close();
  }
  expectSecrets(t, v2);
  expect(running(t, "blog-backend")?.credentials).toEqual(credentialsOf("blog-backend", v2));
  expect(running(t, "blog-backend")?.invocation).not.toBe(before);
  expect(secretSets(t)).toHaveLength(1);
  expect(pendingDelivery(t)).toBe(false);
  expect(currentSystem(t)).toBe(closures.other);
});

test("a new closure that fails its health check takes its new secrets back with it (exit 3)", () => {
  const r = deployTo(t, closures.unhealthy, secretsEnv({ ...v2, backendApiKey: `unhealthy-${token()}` }));

  expect(r.stderr).toContain("deploy failed: health check");
  expect(r.stderr).toMatch(/rolled back: the host runs generation \d+ .* again, boots it, and passed the health check; its secrets are the set from before the deploy again/);
  expect(r.status).toBe(3);
  expect(currentSystem(t)).toBe(closures.other);
  expectSecrets(t, v2);
  expect(running(t, "blog-backend")?.credentials).toEqual(credentialsOf("blog-backend", v2));
  expect(secretSets(t)).toHaveLength(1);
  expect(pendingDelivery(t)).toBe(false);
});

test.each([
  ["with a new closure", () => closures.unconfirmed],
  ["with the closure unchanged", () => closures.other],
])("the target's own rollback timer brings the previous secrets back when the deployer vanishes (%s)", (_what, closure) => {
  const before = currentSystem(t);
  const changed = `unconfirmed-${token()}`;

  const r = deployTo(t, closure(), { ...secretsEnv({ ...v2, backendApiKey: changed }), DEPLOY_TEST_STOP_AFTER: "activate", HEALTH_TIMEOUT: "2", ROLLBACK_DEADLINE: "4" });

  expect(r.stderr).toContain("stopping unconfirmed");
  expect(r.status).toBe(4);
  expect(secretOf(t, "backendApiKey")?.toString()).toBe(changed);
  expect(running(t, "blog-backend")?.credentials.backendApiKey).toBe(sha(changed));
  expect(waitFor(() => secretOf(t, "backendApiKey")?.toString() === v2.backendApiKey, 20_000)).toBe(true);
  expect(waitFor(() => currentSystem(t) === before && running(t, "blog-backend")?.credentials.backendApiKey === sha(v2.backendApiKey), 15_000)).toBe(true);
  expectSecrets(t, v2);
  expect(secretSets(t)).toHaveLength(1);
  expect(pendingDelivery(t)).toBe(false);
});

test("a reboot between the delivery and the commit: the boot settles it (the set from before is back), and the next connection reports the previous system and secrets (exit 3)", async () => {
  const target = secretsTarget();
  const first = freshValues();
  const base = deployTo(target, closures.next, secretsEnv(first));
  expect(base.status).toBe(0);
  const pause = pauseFile();
  const deploy = inBackground(target, closures.other, { ...secretsEnv({ ...first, backendApiKey: `lost-${token()}` }), DEPLOY_TEST_PAUSE_AFTER: "activate", DEPLOY_TEST_PAUSE_FILE: pause });
  expect(await waitForAsync(() => fs.existsSync(pause), 60_000)).toBe(true);

  rebootTarget(target); // a power cut: /run (and the deploy's state in it) is gone; /var/lib stays
  expect(currentSystem(target)).toBe(closures.next);
  // The boot unit settled it before any service started: the services run with the old key.
  expect(onTarget(target, "journalctl -b -o cat -u blog-secrets-resolve.service")).toContain("the delivery was never committed: the secrets from before it are back");
  expect(running(target, "blog-backend")?.credentials).toEqual(credentialsOf("blog-backend", first));
  expectSecrets(target, first);
  fs.rmSync(pause);
  const r = await deploy.done;

  expect(r.stderr).toContain("the connection to the target dropped");
  expect(r.stderr).toContain("its secrets are the set from before the deploy again");
  expect(r.status).toBe(3);
  expect(currentSystem(target)).toBe(closures.next);
  expectSecrets(target, first);
  expect(secretSets(target)).toHaveLength(1);
  expect(pendingDelivery(target)).toBe(false);
});

test("the settle unit never acts while a deploy holds the host: started or restarted by hand, or by its target, it leaves the running deploy's delivery alone", async () => {
  const held = { ...v2, backendApiKey: `held-${token()}` };
  const pause = pauseFile();
  const deploy = inBackground(t, closures.next, { ...secretsEnv(held), DEPLOY_TEST_PAUSE_AFTER: "deliver", DEPLOY_TEST_PAUSE_FILE: pause });
  expect(await waitForAsync(() => fs.existsSync(pause), 60_000)).toBe(true);
  expect(pendingDelivery(t)).toBe(true);

  // What switch-to-configuration does at the end of every activation (it starts every active
  // target, sysinit.target among them), and what an operator might do.
  onTarget(t, "systemctl start sysinit.target; systemctl start blog-secrets-resolve.service; systemctl restart blog-secrets-resolve.service");

  expect(pendingDelivery(t)).toBe(true);
  expectSecrets(t, held);
  fs.rmSync(pause);
  const r = await deploy.done;
  expect(r.stderr).toContain("Deployed:");
  expect(r.status).toBe(0);
  expectSecrets(t, held);
  expect(running(t, "blog-backend")?.credentials).toEqual(credentialsOf("blog-backend", held));
  expect(pendingDelivery(t)).toBe(false);
  expect(secretSets(t)).toHaveLength(1);
  v2 = held;
});

test("a reboot once the commit made the new system the boot default, before it deleted the set from before: the boot keeps the new secrets (exit 0 after reconnecting)", async () => {
  const target = secretsTarget();
  const first = freshValues();
  expect(deployTo(target, closures.next, secretsEnv(first)).status).toBe(0);
  const rotated = { ...first, backendApiKey: `committed-${token()}` };
  const pause = pauseFile();
  const deploy = inBackground(target, closures.other, { ...secretsEnv(rotated), DEPLOY_TEST_PAUSE_AFTER: "activate", DEPLOY_TEST_PAUSE_FILE: pause });
  expect(await waitForAsync(() => fs.existsSync(pause), 60_000)).toBe(true);
  // The commit's steps before its last one (scripts/target-shim.sh, commit.sh): the delivery is
  // marked committed, the new system becomes the profile and the boot default. Then the power goes.
  onTarget(
    target,
    `/bin/sh /run/blog-deploy/deploy/secrets.sh mark-committed && nix-env -p /nix/var/nix/profiles/system --set ${closures.other} && ${closures.other}/bin/switch-to-configuration boot`,
  );
  expect(pendingDelivery(target)).toBe(true);

  rebootTarget(target);

  expect(currentSystem(target)).toBe(closures.other);
  expect(onTarget(target, "journalctl -b -o cat -u blog-secrets-resolve.service")).toContain("the delivery was committed and its system runs: its secrets stay");
  expect(pendingDelivery(target)).toBe(false);
  expect(secretSets(target)).toHaveLength(1);
  expectSecrets(target, rotated);
  expect(running(target, "blog-backend")?.credentials).toEqual(credentialsOf("blog-backend", rotated));
  fs.rmSync(pause);
  const r = await deploy.done;
  expect(r.stderr).toContain("the connection to the target dropped");
  expect(r.stderr).toContain("Deployed: the commit had completed before the connection dropped");
  expect(r.status).toBe(0);
  expectSecrets(target, rotated);
});

test("a /var/lib/blog-secrets directory made by hand is taken over: replaced by the link, and gone once the deploy commits", () => {
  const target = secretsTarget();
  onTarget(target, "mkdir -p -m 700 /var/lib/blog-secrets && printf old > /var/lib/blog-secrets/handMade");
  const values = { backendApiKey: `adopted-${token()}` };

  const r = deployTo(target, closures.base, secretsEnv(values));

  expect(r.status).toBe(0);
  expect(r.stderr).toContain("secrets: added backendApiKey; removed handMade");
  expect(fs.lstatSync(path.join(varLib(target), "blog-secrets")).isSymbolicLink()).toBe(true);
  expectSecrets(target, values);
  expect(secretSets(target)).toHaveLength(1);
  expect(pendingDelivery(target)).toBe(false);
});

describe("HEALTH_PINNED_KEY", () => {
  let target: Target;
  let pin: string;

  beforeAll(() => {
    const dir = fs.mkdtempSync(path.join(work, "tls-"));
    const cert = path.join(dir, "origin.pem");
    const key = path.join(dir, "origin.key");
    // Self-signed, like an origin certificate no public CA list holds.
    const made = run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=blog.test", "-addext", "subjectAltName=DNS:blog.test"]);
    if (made.status !== 0) throw new Error(`openssl: ${made.stderr}`);
    const der = run("sh", ["-c", `openssl x509 -in ${cert} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`]);
    pin = `sha256//${der.stdout.trim()}`;
    // The systems' web unit serves HTTPS on 443 with these.
    target = secretsTarget({ ipv6: false, env: { TARGET_TLS_CERT: cert, TARGET_TLS_KEY: key } });
  });

  const https = () => ({ HEALTH_URL: "https://blog.test/health.txt", PUBLISHED_ADDRESSES: target.addr4 });

  test("the right pin passes without any CA knowing the certificate", () => {
    const r = deployTo(target, closures.base, { ...https(), HEALTH_PINNED_KEY: pin });

    expect(r.stderr).toContain("accepted by its pinned public key only");
    expect(r.stderr).toContain("Deployed:");
    expect(r.status).toBe(0);
  });

  test("a wrong pin fails the health check (curl refuses the key), and so the deploy", () => {
    const wrong = `sha256//${crypto.createHash("sha256").update("another key").digest("base64")}`;

    const r = deployTo(target, closures.bare, { ...https(), HEALTH_PINNED_KEY: wrong, HEALTH_TIMEOUT: "2" });

    expect(r.stderr).toMatch(/deploy failed: health check: https:\/\/blog\.test\/health\.txt did not pass within 2s through .*public key does not match pinned public key/);
    expect(r.status).not.toBe(0);
    expect(currentSystem(target)).toBe(closures.base);
  });
});
