// The test targets themselves (harness/target.sh): runs on one machine never collide. Numbers
// (and with them namespaces, addresses, veth pairs, machine and cgroup names) are allocated under a
// machine-wide lock and recorded with their owner; a run that died leaves targets the next start
// reclaims, and only those; a start that cannot get a number, or fails half-way, says so and leaves
// nothing behind.
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { run } from "./harness/target";

jest.setTimeout(180_000);

const targetScript = path.join(__dirname, "harness", "target.sh");
const dirs: string[] = [];

function newDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "blog-harness-test-"));
  dirs.push(dir);
  return dir;
}

function envOf(dir: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of fs.readFileSync(path.join(dir, "target.env"), "utf8").split("\n")) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2].replace(/^'(.*)'$/, "$1");
  }
  return env;
}

/** target.sh start DIR in the background, owned by `owner`: its status and output. */
function startAsync(dir: string, owner = process.pid, extra: Record<string, string> = {}) {
  return new Promise<{ status: number | null; stderr: string }>((resolve) => {
    const child = spawn(targetScript, ["start", dir], { env: { ...process.env, TARGET_OWNER_PID: String(owner), ...extra }, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stderr });
    });
  });
}

function stop(dir: string) {
  return run(targetScript, ["stop", dir], { timeoutMs: 60_000 });
}

/** What is left of target N on this machine: its namespace, link, cgroups, slot record. */
function leftovers(n: string): string[] {
  const found: string[] = [];
  if (fs.existsSync(`/run/netns/blogt-${n}`)) found.push("namespace");
  if (run("ip", ["link", "show", `bt${n}-h`]).status === 0) found.push("link");
  for (const h of ["systemd", "unified", "devices"]) if (fs.existsSync(`/sys/fs/cgroup/${h}/blog-test/blogt-${n}`)) found.push(`cgroup ${h}`);
  if (fs.existsSync(`/run/blog-test/slots/${n}`)) found.push("slot");
  return found;
}

function mountsUnder(dir: string): string[] {
  return fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").map((l) => l.split(" ")[4] ?? "").filter((m) => m.startsWith(`${dir}/`));
}

afterAll(() => {
  for (const dir of dirs) {
    stop(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("targets started at once get distinct numbers, namespaces, addresses and cgroups, and each answers with its own host key", async () => {
  const started = [newDir(), newDir(), newDir()];

  const results = await Promise.all(started.map((dir) => startAsync(dir)));

  for (const r of results) expect(r.stderr).toBe("");
  expect(results.map((r) => r.status)).toEqual([0, 0, 0]);
  const envs = started.map(envOf);
  for (const key of ["SLOT", "NETNS", "MACHINE", "TARGET_ADDR4", "TARGET_ADDR6", "HOST_KEY"]) {
    expect(new Set(envs.map((e) => e[key])).size).toBe(3);
  }
  for (const env of envs) {
    const presented = run("ssh-keyscan", ["-T", "5", "-t", "ed25519", env.TARGET_ADDR4]).stdout.trim().split(" ").slice(1, 3).join(" ");
    expect(presented).toBe(env.HOST_KEY.split(" ").slice(0, 2).join(" "));
    expect(fs.readFileSync(`/run/blog-test/slots/${env.SLOT}/dir`, "utf8").trim()).toBe(env.TARGET_DIR);
    expect(fs.readFileSync(`/run/blog-test/slots/${env.SLOT}/owner`, "utf8").split(" ")[0]).toBe(String(process.pid));
  }
  for (const dir of started) {
    const n = envOf(dir).SLOT;
    expect(stop(dir).status).toBe(0);
    expect(leftovers(n)).toEqual([]);
    expect(mountsUnder(dir)).toEqual([]);
    expect(stop(dir).status).toBe(0); // idempotent
  }
});

test("a target whose owner died is reclaimed by the next start (container, mounts, namespace, cgroups), and a living owner's is not", async () => {
  const owner = spawn("sleep", ["300"], { stdio: "ignore" });
  const orphan = newDir();
  const kept = newDir();
  expect((await startAsync(orphan, owner.pid)).status).toBe(0);
  expect((await startAsync(kept)).status).toBe(0);
  const { SLOT: n, NSPAWN_PID: nspawn, SUPERVISOR_PID: supervisor } = envOf(orphan);
  owner.kill("SIGKILL");
  await new Promise((resolve) => owner.on("exit", resolve));

  const next = newDir();
  const r = await startAsync(next);

  // This start reclaimed it, or another run's start did first (runs share the machine).
  const slot = `/run/blog-test/slots/${n}`;
  if (!r.stderr.includes(`reclaiming target ${n} of a run that is gone (${orphan})`)) {
    expect(fs.existsSync(slot) ? fs.readFileSync(`${slot}/dir`, "utf8").trim() : "").not.toBe(orphan);
  }
  expect(r.status).toBe(0);
  const alive = (pid: string) => fs.existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  expect([nspawn, supervisor].filter(alive)).toEqual([]);
  expect(mountsUnder(orphan)).toEqual([]);
  // Its number is free again: the new target may have it (the lowest free one), or it is unused.
  if (envOf(next).SLOT !== n) expect(leftovers(n)).toEqual([]);
  expect(run("ssh-keyscan", ["-T", "3", envOf(kept).TARGET_ADDR4]).stdout).toContain("ssh-ed25519");
  expect(fs.existsSync(`/run/blog-test/slots/${envOf(kept).SLOT}`)).toBe(true);
});

test("when no number is free, a start fails clearly and leaves nothing", async () => {
  const holder = newDir();
  expect((await startAsync(holder)).status).toBe(0);
  // Every number up to the one it got was taken when it got it (the lowest free one).
  const max = envOf(holder).SLOT;
  let refused = newDir();

  let r = await startAsync(refused, process.pid, { TARGET_MAX_SLOT: max });
  // Another run on the machine may have freed a lower number meanwhile: this run holds that one too
  // (the dirs are stopped at the end) and tries again; each try fills one such gap.
  for (let tries = 0; r.status === 0 && tries < 5; tries++) {
    refused = newDir();
    r = await startAsync(refused, process.pid, { TARGET_MAX_SLOT: max });
  }

  expect(r.stderr).toContain(`no free test target: all ${max} numbers are in use`);
  expect(r.status).not.toBe(0);
  expect(fs.existsSync(path.join(refused, "target.env"))).toBe(false);
  expect(mountsUnder(refused)).toEqual([]);
});

test("a start that fails half-way removes what it made, says why, and frees its number", async () => {
  const dir = newDir();

  const r = await startAsync(dir, process.pid, { TARGET_TLS_CERT: "/nonexistent/cert.pem", TARGET_TLS_KEY: "/nonexistent/key.pem" });

  expect(r.stderr).toContain("cannot stat '/nonexistent/cert.pem'");
  expect(r.stderr).toMatch(/starting the target in \S+ failed \(step: its own files, status 1\); removing what was made/);
  expect(r.status).not.toBe(0);
  expect(fs.existsSync(path.join(dir, "target.env"))).toBe(false);
  expect(mountsUnder(dir)).toEqual([]);
  const mine = fs.existsSync("/run/blog-test/slots")
    ? fs.readdirSync("/run/blog-test/slots").filter((n) => {
        try {
          return fs.readFileSync(`/run/blog-test/slots/${n}/dir`, "utf8").trim() === dir;
        } catch {
          return false;
        }
      })
    : [];
  expect(mine).toEqual([]);
});

test("the harness refuses clearly when the targets' root file system is not built", () => {
  const r = spawnSync(targetScript, ["start", newDir()], { env: { ...process.env, XDG_CACHE_HOME: fs.mkdtempSync(path.join(os.tmpdir(), "blog-no-cache-")) }, encoding: "utf8" });

  expect(r.stderr).toContain("the test targets' root file system is not built");
  expect(r.stderr).toContain("run bash scripts/setup.sh");
  expect(r.status).not.toBe(0);
});
