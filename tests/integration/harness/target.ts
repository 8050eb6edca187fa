// A real deploy target for the integration tests (see target.sh for what it
// is made of) plus helpers to build fake system closures and run the scripts.
// Every call is bounded by a timeout; every process started is stopped by pid.
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { nixEnv } from "../../nixConfig";

export const repoRoot = path.resolve(__dirname, "../../..");
const harnessDir = __dirname;
const targetScript = path.join(harnessDir, "target.sh");

export interface Target {
  /** Working directory holding keys, configs and logs (no spaces). */
  dir: string;
  /** The target's IPv4 address: 127.0.0.1, or 198.18.N.2 in its own network namespace. */
  addr4: string;
  /** Its IPv6 address (netns only, "" without one). */
  addr6: string;
  /** Its network namespace, blogt-N ("" on loopback). */
  netns: string;
  /** sshd port on addr4 (22 in a network namespace). */
  port: number;
  /** Pid of sshd (inside the target's mount namespace). */
  sshdPid: number;
  /** Port of the health endpoint on addr4 (and addr6). */
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

/** "<address> <port>" of every target this process started: the control masters to look for. */
const startedTargets = new Set<string>();

/**
 * Starts a target; storeSize/bootSize are tmpfs sizes such as "256m". `netns` gives it a network
 * namespace of its own (198.18.N.2, and fd42:b10b:N::2 unless ipv6 is false).
 */
export function startTarget(
  opts: { storeSize?: string; bootSize?: string; netns?: boolean; ipv6?: boolean } = {},
): Target {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "blog-target-"));
  let out: string;
  try {
    const r = run(targetScript, ["start", dir, opts.storeSize ?? "256m", opts.bootSize ?? "16m"], {
      env: { ...process.env, TARGET_NET: opts.netns ? "netns" : "loopback", TARGET_IPV6: opts.ipv6 === false ? "0" : "1" },
      timeoutMs: 60_000,
    });
    if (r.status !== 0) throw new Error(`target.sh start exited ${r.status}: ${r.stderr}${r.stdout}`);
    out = r.stdout;
  } catch (e) {
    run(targetScript, ["stop", dir], { timeoutMs: 30_000 }); // whatever did start, by pid
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const env: Record<string, string> = {};
  for (const line of out.split("\n")) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2].replace(/^'(.*)'$/, "$1");
  }
  startedTargets.add(`${env.TARGET_ADDR4} ${env.TARGET_PORT}`);
  return {
    dir,
    addr4: env.TARGET_ADDR4,
    addr6: env.TARGET_ADDR6 ?? "",
    netns: env.NETNS ?? "",
    port: Number(env.TARGET_PORT),
    sshdPid: Number(env.SSHD_PID),
    healthPort: Number(env.HEALTH_PORT),
    hostKey: env.HOST_KEY,
    clientKey: fs.readFileSync(env.CLIENT_KEY, "utf8"),
  };
}

/** Stops every process of the target by pid and removes its directory. */
export function stopTarget(t: Target | undefined): void {
  if (!t) return;
  mustRun(targetScript, ["stop", t.dir]);
  fs.rmSync(t.dir, { recursive: true, force: true });
}

/** Runs a shell command inside the target's mount namespace (not over SSH). */
export function onTarget(t: Target, command: string): string {
  return mustRun(targetScript, ["run", t.dir, "sh", "-c", command]).trim();
}

/** The closure /run/current-system points at on the target ("" if none). */
export function currentSystem(t: Target): string {
  return onTarget(t, "readlink -e /run/current-system || true");
}

/** The system the target's system profile points at ("" if none). */
export function profileSystem(t: Target): string {
  return onTarget(t, "readlink -e /nix/var/nix/profiles/system || true");
}

/** The boot default the fake switch-to-configuration boot wrote ("" if none). */
export function bootDefault(t: Target): string {
  return onTarget(t, "readlink -e /boot/default-system || true");
}

/** A simulated reboot (target.sh reboot): it comes back running its boot default. */
export function rebootTarget(t: Target): void {
  mustRun(targetScript, ["reboot", t.dir]);
}

/** Copies a closure from the deployer's store into the target's (not over SSH). */
export function copyToTarget(t: Target, storePath: string): void {
  const paths = mustRun("nix-store", ["--query", "--requisites", storePath]).trim().split("\n");
  const nar = spawnSync("nix-store", ["--export", ...paths], { maxBuffer: 256 * 1024 * 1024, timeout: 60_000 });
  if (nar.status !== 0) throw new Error(`nix-store --export failed: ${nar.stderr}`);
  const r = spawnSync(targetScript, ["run", t.dir, "nix-store", "--import"], { input: nar.stdout, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`nix-store --import on the target failed: ${r.stderr}`);
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

/** Accepted SSH logins so far (one per connection). */
export function sshConnections(t: Target): number {
  const log = fs.readFileSync(path.join(t.dir, "sshd.log"), "utf8");
  return (log.match(/Accepted publickey/g) ?? []).length;
}

/** Replaces the target's host key (sshd re-reads it); returns the new public key. */
export function changeHostKey(t: Target): string {
  return mustRun(targetScript, ["set-host-key", t.dir]).trim();
}

/**
 * A disk appears in the target (target.sh attach-disk): `image` becomes a loop device of this
 * machine, linked inside the target as /dev/disk/by-id/<name>. Returns the loop device.
 */
export function attachDisk(t: Target, image: string, name: string): string {
  return mustRun(targetScript, ["attach-disk", t.dir, image, name]).trim();
}

/** The disk goes away (target.sh detach-disk), mounted or not; stopTarget detaches what is left. */
export function detachDisk(t: Target, name: string): void {
  mustRun(targetScript, ["detach-disk", t.dir, name]);
}

/** A free TCP port on 127.0.0.1 with nothing listening. */
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
  fail?: boolean;
  healthy?: boolean;
  deps?: number;
  changedDep?: number;
  blobBytes?: number;
}

/** Builds a fake NixOS system closure in the deployer's store; returns its path. */
export function buildClosure(a: ClosureArgs): string {
  const args = [path.join(harnessDir, "closures.nix"), "--no-out-link", "--option", "substituters", ""];
  args.push("--argstr", "name", a.name);
  if (a.fail !== undefined) args.push("--arg", "fail", String(a.fail));
  if (a.healthy !== undefined) args.push("--arg", "healthy", String(a.healthy));
  for (const k of ["deps", "changedDep", "blobBytes"] as const) {
    if (a[k] !== undefined) args.push("--arg", k, String(a[k]));
  }
  return mustRun("nix-build", args, 120_000).trim();
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
 * Pids of SSH control masters deploy.sh started that are still running, for a target this process
 * started (other test runs on the machine have masters of their own meanwhile).
 */
export function leftoverControlMasters(): number[] {
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
    const mine = [...startedTargets].some((t) => {
      const [address, port] = t.split(" ");
      return args.includes(`root@${address}`) && args.some((a, i) => a === "-p" && args[i + 1] === port);
    });
    if (mine) pids.push(Number(entry));
  }
  return pids;
}
