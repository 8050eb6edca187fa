// A real deploy target for the integration tests (see target.sh: a systemd-nspawn container that
// boots systemd as PID 1, in a network namespace of its own) plus helpers to build fake system
// closures (closures.nix: real units, a switch-to-configuration modelled on NixOS's) and run the
// scripts. Every call is bounded by a timeout; every target is stopped by stopTarget, which finds
// what a failed start left.
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { nixEnv } from "../../nixConfig";

export const repoRoot = path.resolve(__dirname, "../../..");
const harnessDir = __dirname;
const targetScript = path.join(harnessDir, "target.sh");

export interface Target {
  /** Working directory holding keys, logs and the target's mounts (no spaces). */
  dir: string;
  /** The target's root file system as this machine sees it (its overlay, mounted at DIR/root). */
  root: string;
  /** The target's number N (its namespace blogt-N, addresses 198.18.N.2 and fd42:b10b:N::2). */
  slot: number;
  /** The target's IPv4 address, 198.18.N.2. */
  addr4: string;
  /** Its IPv6 address ("" without one). */
  addr6: string;
  /** Its network namespace, blogt-N. */
  netns: string;
  /** sshd's port (22). */
  port: number;
  /** The port of the site (HTTP, 80) a system's web unit serves. */
  healthPort: number;
  /** The target's host public key line. */
  hostKey: string;
  /** Private key text the target accepts for root. */
  clientKey: string;
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command, bounded by timeoutMs; throws if it cannot start. */
export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string; cwd?: string } = {},
): RunResult {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    input: opts.input,
    encoding: "utf8",
    timeout: opts.timeoutMs ?? 120_000,
    killSignal: "SIGKILL",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function mustRun(cmd: string, args: string[], timeoutMs = 60_000): string {
  const r = run(cmd, args, { timeoutMs });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

/** The addresses of every target this process started: the control masters to look for. */
const startedAddresses = new Set<string>();

/** target.env's lines, as key/value pairs (HOST_KEY unquoted). */
function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2].replace(/^'(.*)'$/, "$1");
  }
  return env;
}

/**
 * Starts (boots) a target; storeSize/bootSize are the tmpfs sizes of its /nix and /boot, such as
 * "256m". It has IPv6 (fd42:b10b:N::2) unless ipv6 is false. `netns` is accepted for the callers
 * of the earlier harness: every target has a network namespace of its own.
 */
export function startTarget(
  opts: { storeSize?: string; bootSize?: string; netns?: boolean; ipv6?: boolean; env?: Record<string, string> } = {},
): Target {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "blog-target-"));
  let out: string;
  try {
    const r = run(targetScript, ["start", dir, opts.storeSize ?? "256m", opts.bootSize ?? "16m"], {
      env: { ...process.env, TARGET_IPV6: opts.ipv6 === false ? "0" : "1", TARGET_OWNER_PID: String(process.pid), ...opts.env },
      timeoutMs: 240_000,
    });
    if (r.status !== 0) throw new Error(`target.sh start exited ${r.status}: ${r.stderr}${r.stdout}`);
    out = r.stdout;
  } catch (e) {
    run(targetScript, ["stop", dir], { timeoutMs: 60_000 }); // whatever did start
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const env = parseEnv(out);
  for (const a of [env.TARGET_ADDR4, env.TARGET_ADDR6]) if (a) startedAddresses.add(a);
  return {
    dir,
    root: env.TARGET_ROOT,
    slot: Number(env.SLOT),
    addr4: env.TARGET_ADDR4,
    addr6: env.TARGET_ADDR6 ?? "",
    netns: env.NETNS ?? "",
    port: Number(env.TARGET_PORT),
    healthPort: Number(env.HEALTH_PORT),
    hostKey: env.HOST_KEY,
    clientKey: fs.readFileSync(env.CLIENT_KEY, "utf8"),
  };
}

/** Stops the target (its container, mounts, namespace, disks) and removes its directory. */
export function stopTarget(t: Target | undefined): void {
  if (!t) return;
  mustRun(targetScript, ["stop", t.dir], 60_000);
  fs.rmSync(t.dir, { recursive: true, force: true });
}

/** Runs a shell command inside the target (its namespaces; not over SSH); its stdout, trimmed. */
export function onTarget(t: Target, command: string, timeoutMs = 60_000): string {
  return mustRun(targetScript, ["run", t.dir, "sh", "-c", command], timeoutMs).trim();
}

/** The same, with its status and output (no throw on failure). */
export function tryOnTarget(t: Target, command: string, timeoutMs = 60_000): RunResult {
  return run(targetScript, ["run", t.dir, "sh", "-c", command], { timeoutMs });
}

/** The closure /run/current-system points at on the target ("" if none). */
export function currentSystem(t: Target): string {
  return onTarget(t, "readlink -e /run/current-system || true");
}

/** The system the target's system profile points at ("" if none). */
export function profileSystem(t: Target): string {
  return onTarget(t, "readlink -e /nix/var/nix/profiles/system || true");
}

/** The boot default switch-to-configuration boot wrote ("" if none). */
export function bootDefault(t: Target): string {
  return onTarget(t, "readlink -e /boot/default-system || true");
}

/**
 * A reboot (target.sh reboot): hard, as a crash or a power cut, unless clean (systemctl reboot).
 * The target boots its boot default, and comes back with systemd settled.
 */
export function rebootTarget(t: Target, opts: { clean?: boolean } = {}): void {
  mustRun(targetScript, ["reboot", t.dir, ...(opts.clean ? ["--clean"] : [])], 120_000);
}

/** The host pid of the target's PID 1 (systemd). */
export function leaderPid(t: Target): number {
  return Number(mustRun(targetScript, ["leader", t.dir]).trim());
}

/** A path inside the running target, as this machine reaches it (through its PID 1's root). */
export function targetPath(t: Target, p: string): string {
  return `/proc/${leaderPid(t)}/root${p}`;
}

/** The host pid of the target's sshd listener (ssh.service's main process). */
export function sshdPid(t: Target): number {
  const inside = onTarget(t, "systemctl show -p MainPID --value ssh.service");
  const procs = path.join(`/sys/fs/cgroup/systemd/blog-test/blogt-${t.slot}/payload/system.slice/ssh.service/cgroup.procs`);
  for (const pid of fs.readFileSync(procs, "utf8").split("\n").filter(Boolean)) {
    const nspid = /^NSpid:\s+(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1].trim().split(/\s+/).pop();
    if (nspid === inside) return Number(pid);
  }
  throw new Error(`no process of ssh.service on the target has the pid ${inside} inside it`);
}

/** The site's page as the target serves it over HTTP ("" unless it answers 200). */
export function healthPage(t: Target): string {
  const r = run("curl", ["-s", "--max-time", "5", "--fail", `http://${t.addr4}:${t.healthPort}/health.txt`], { timeoutMs: 15_000 });
  return r.status === 0 ? r.stdout.trim() : "";
}

/** A unit's ActiveState on the target. */
export function unitState(t: Target, unit: string): string {
  if (!/^[-A-Za-z0-9@:._\\]+$/.test(unit)) throw new Error(`'${unit}' is not a unit name`);
  return onTarget(t, `systemctl show -p ActiveState --value '${unit}'`);
}

/** What a service of the test systems (service.sh) recorded at its start: its invocation and credentials. */
export function serviceRecord(t: Target, service: string): { invocation: string; credentials: Record<string, string> } | undefined {
  const text = onTarget(t, `cat /run/blog-test-${service}/record 2>/dev/null || true`);
  if (!text) return undefined;
  const credentials: Record<string, string> = {};
  let invocation = "";
  for (const line of text.split("\n")) {
    const m = /^credential=(\S+) ([0-9a-f]{64})$/.exec(line);
    if (m) credentials[m[1]] = m[2];
    if (line.startsWith("invocation=")) invocation = line.slice("invocation=".length);
  }
  return { invocation, credentials };
}

/** Copies a closure from the deployer's store into the target's (not over SSH). */
export function copyToTarget(t: Target, storePath: string): void {
  const paths = mustRun("nix-store", ["--query", "--requisites", storePath]).trim().split("\n");
  const nar = spawnSync("nix-store", ["--export", ...paths], { maxBuffer: 256 * 1024 * 1024, timeout: 60_000 });
  if (nar.status !== 0) throw new Error(`nix-store --export failed: ${nar.stderr}`);
  const r = spawnSync(targetScript, ["run", t.dir, "nix-store", "--import"], { input: nar.stdout, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`nix-store --import on the target failed: ${r.stderr}`);
}

/**
 * Installs a system on the target as an install leaves it, without the deploy: copied into its
 * store, the system profile, then switch-to-configuration switch (its status is the result's).
 */
export function installSystem(t: Target, closure: string): RunResult {
  copyToTarget(t, closure);
  return tryOnTarget(t, `nix-env -p /nix/var/nix/profiles/system --set ${closure} && ${closure}/bin/switch-to-configuration switch`, 120_000);
}

/** The system profile's generation number on the target (0 if none). */
export function generation(t: Target): number {
  const link = onTarget(t, "readlink /nix/var/nix/profiles/system || true");
  const m = /system-(\d+)-link/.exec(link);
  return m ? Number(m[1]) : 0;
}

/** Whether a store path is valid in the target's store. */
export function targetHasPath(t: Target, storePath: string): boolean {
  return onTarget(t, `nix-store --check-validity ${storePath} && echo yes || echo no`) === "yes";
}

/** Accepted SSH logins so far (one per connection; sshd's log, kept across reboots). */
export function sshConnections(t: Target): number {
  const file = path.join(t.dir, "sshd.log");
  const log = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
  return (log.match(/Accepted publickey/g) ?? []).length;
}

/** Replaces the target's host key (sshd reloads); returns the new public key. */
export function changeHostKey(t: Target): string {
  return mustRun(targetScript, ["set-host-key", t.dir]).trim();
}

/**
 * A disk appears in the target (target.sh attach-disk): `image` becomes a loop device of this
 * machine, whose node appears in the target, linked as /dev/disk/by-id/<name> (and by-label).
 * Returns the loop device.
 */
export function attachDisk(t: Target, image: string, name: string): string {
  return mustRun(targetScript, ["attach-disk", t.dir, image, name]).trim();
}

/** The disk goes away (target.sh detach-disk), mounted or not; stopTarget detaches what is left. */
export function detachDisk(t: Target, name: string): void {
  mustRun(targetScript, ["detach-disk", t.dir, name]);
}

/** A free TCP port on 127.0.0.1 with nothing listening (an address no target answers on). */
export function closedPort(): number {
  return Number(
    mustRun("python3", [
      "-c",
      'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])',
    ]).trim(),
  );
}

export interface ClosureArgs {
  name: string;
  /** A unit that fails to start: switch-to-configuration exits 4. */
  fail?: boolean;
  /** The site answers 200 (true, the default) or 503. */
  healthy?: boolean;
  deps?: number;
  changedDep?: number;
  blobBytes?: number;
  /** The backend's secrets (blog-backend.service takes them as credentials). */
  secrets?: string[];
  /** Services taking host secrets, by name (instead of the backend's). */
  services?: Record<string, string[]>;
  /** The data volume's mounts (blog.host.dataVolume). */
  dataVolume?: boolean;
  /** blog.host.tls: acme or cloudflare-origin. */
  tls?: string;
  /** More units: name -> unit file text and the targets that want it. */
  units?: Record<string, { text: string; wantedBy?: string[] }>;
  /** More fstab entries, by mount point. */
  fileSystems?: Record<string, { device: string; fsType: string; options: string[] }>;
}

/** A Nix expression for a value: strings, numbers, booleans, lists and attribute sets. */
export function nixValue(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v).replace(/\$\{/g, "\\${");
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `[ ${v.map(nixValue).join(" ")} ]`;
  if (v && typeof v === "object") {
    return `{ ${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)} = ${nixValue(x)};`).join(" ")} }`;
  }
  throw new Error(`no Nix value for ${String(v)}`);
}

/** Builds a fake NixOS system closure in the deployer's store (closures.nix); returns its path. */
export function buildClosure(a: ClosureArgs): string {
  const args = [path.join(harnessDir, "closures.nix"), "--no-out-link", "--option", "substituters", ""];
  for (const [key, value] of Object.entries(a)) {
    if (value === undefined) continue;
    if (typeof value === "string") args.push("--argstr", key, value);
    else args.push("--arg", key, nixValue(value));
  }
  return mustRun("nix-build", args, 120_000).trim();
}

/**
 * Copies closures.nix and what it reads (the harness's unit programs, the NixOS modules' unit
 * data) into dir, for a flake of test systems: `import ./closures.nix { modules = ./modules; ... }`.
 */
export function copyClosureSources(dir: string): void {
  for (const f of ["closures.nix", "backup-units.nix", "switch-to-configuration.py", "activate.sh", "web-server.py", "service.sh"]) {
    fs.copyFileSync(path.join(harnessDir, f), path.join(dir, f));
  }
  fs.mkdirSync(path.join(dir, "modules"), { recursive: true });
  fs.copyFileSync(path.join(repoRoot, "nix/modules/secret-names.nix"), path.join(dir, "modules/secret-names.nix"));
  fs.cpSync(path.join(repoRoot, "nix/modules/units"), path.join(dir, "modules/units"), { recursive: true });
}

/** Environment for deploy.sh / install.sh against a target. */
export function scriptEnv(t: Target, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    ...nixEnv(),
    TARGET_HOST: t.addr4,
    TARGET_PORT: String(t.port),
    TARGET_USER: "root",
    HOST_KEY: t.hostKey,
    SSH_PRIVATE_KEY: t.clientKey,
    HEALTH_URL: `http://${t.addr4}:${t.healthPort}/health.txt`,
    HEALTH_TIMEOUT: "4",
    ROLLBACK_DEADLINE: "30",
    CONNECT_ATTEMPTS: "3",
    CONNECT_TIMEOUT: "20",
    ...extra,
  };
}

/** Runs scripts/<name> with env, bounded by timeoutMs. */
export function runScript(name: string, env: NodeJS.ProcessEnv, timeoutMs = 120_000): RunResult {
  return run(path.join(repoRoot, "scripts", name), [], { env, timeoutMs });
}

/** A script running in the background: its output so far, and its result. */
export interface Background {
  pid: number;
  stderr: () => string;
  done: Promise<RunResult>;
}

/**
 * Starts scripts/<name> in the background, in a process group of its own (so a test can kill the
 * whole deployer, as if it died), killed after timeoutMs.
 */
export function startScript(name: string, env: NodeJS.ProcessEnv, timeoutMs = 120_000): Background {
  const child = spawn(path.join(repoRoot, "scripts", name), [], { env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => killGroup(child.pid ?? 0), timeoutMs);
  const done = new Promise<RunResult>((resolve) => {
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
  return { pid: child.pid ?? 0, stderr: () => stderr, done };
}

/** SIGKILLs a process group (a background script and everything it started in its group). */
export function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Polls check every 100 ms (without blocking the event loop) until it is true or timeoutMs passes. */
export async function waitForAsync(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}

/** Polls check every 200 ms until it returns true or timeoutMs passes. */
export function waitFor(check: () => boolean, timeoutMs: number): boolean {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
  }
  return check();
}

/**
 * Pids of SSH control masters deploy.sh started that are still running: those to target t, or to
 * any target this process started (a target's address is its own on this machine while it runs,
 * so another run's deploys are not counted).
 */
export function leftoverControlMasters(t?: Target): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline = "";
    try {
      cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8");
    } catch {
      continue;
    }
    // The scripts' work directories: <tmpfs>/blog-deploy.<pid>-<start>.<random> (scripts/lib/common.sh).
    if (!cmdline.includes("ControlMaster=yes") || !cmdline.includes("/blog-deploy.")) continue;
    const args = cmdline.split("\0");
    const addresses = t ? [t.addr4, t.addr6].filter((a) => a) : [...startedAddresses];
    if (!addresses.some((a) => args.includes(`root@${a}`))) continue;
    pids.push(Number(entry));
  }
  return pids;
}
