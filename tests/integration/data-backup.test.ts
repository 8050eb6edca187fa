// scripts/data-backup.sh against a real target (harness/target.sh: a container with systemd as PID
// 1) running a system with the data volume's units (harness/closures.nix with dataVolume: /data and
// the backend's state bound from it, mounted by systemd-fstab-generator's units) and services that
// need the volume in the ways a host's can: through the bind mount (the backend), directly
// (RequiresMountsFor=/data), through another service (Requires=), started by a timer, not running
// at all, slow to stop, failing to start again. Each volume is a real ext4 image, attached as a
// loop device (target.sh attach-disk) and brought into use by data-volume.sh attach, exactly as on
// a host; one at a time.
import { createHash } from "crypto";
import { execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import {
  Target,
  attachDisk,
  buildClosure,
  detachDisk,
  installSystem,
  onTarget,
  repoRoot,
  run,
  RunResult,
  scriptEnv,
  sshConnections,
  startTarget,
  stopTarget,
  tryOnTarget,
  unitState,
  waitForAsync,
} from "./harness/target";

jest.setTimeout(120_000);

const MIB = 1024 * 1024;
const script = path.join(repoRoot, "scripts", "data-backup.sh");
const DATA = "/data";
let target: Target | undefined;
let work: string;
let count = 0;
let attached: string[] = [];

function t(): Target {
  if (!target) throw new Error("target not started");
  return target;
}

const service = (unit: string, wantedBy: string[] = ["multi-user.target"]) => ({ text: unit, wantedBy });
// The system's services besides the backend (which needs /data through its bind mount).
const UNITS = {
  "blog-app.service": service("[Unit]\nDescription=Needs /data itself\nRequiresMountsFor=/data\n\n[Service]\nExecStart=/bin/sleep infinity\n"),
  "blog-app.timer": service("[Unit]\nDescription=Starts blog-app.service\n\n[Timer]\nOnActiveSec=1d\nUnit=blog-app.service\n", ["timers.target"]),
  "blog-front.service": service("[Unit]\nDescription=Needs blog-app.service\nRequires=blog-app.service\nAfter=blog-app.service\n\n[Service]\nExecStart=/bin/sleep infinity\n"),
  "blog-idle.service": service("[Unit]\nDescription=Needs /data, and nothing starts it\nRequiresMountsFor=/data\n\n[Service]\nExecStart=/bin/sleep infinity\n", []),
  "blog-other.service": service("[Unit]\nDescription=Needs nothing of the volume\n\n[Service]\nExecStart=/bin/sleep infinity\n"),
  // Slow to stop while /run/blog-test-slow-stop exists; fails to start while /run/blog-test-no-start does.
  "blog-stubborn.service": service(
    "[Unit]\nDescription=Needs /data; slow to stop on demand\nRequiresMountsFor=/data\n\n[Service]\nExecStart=/bin/sleep infinity\nExecStop=/bin/sh -c 'if [ -e /run/blog-test-slow-stop ]; then sleep 6; fi'\nTimeoutStopSec=60\n",
  ),
  "blog-fragile.service": service(
    "[Unit]\nDescription=Needs /data; fails to start again on demand\nRequiresMountsFor=/data\n\n[Service]\nExecStartPre=/bin/sh -c '! test -e /run/blog-test-no-start'\nExecStart=/bin/sleep infinity\n",
  ),
};
const BIND = "var-lib-private-blog\\x2dbackend.mount";
/** What needs /data (data-backup.sh's walk: RequiredBy, BoundBy, TriggeredBy through mounts and services). */
// blog-idle.service is not among them: nothing references it, so systemd has not loaded it, and a
// unit it has not loaded is no unit's RequiredBy=; nothing can have started it since.
const NEEDING = [
  "blog-app.service",
  "blog-app.timer",
  "blog-backend.service",
  "blog-data-dirs.service",
  "blog-fragile.service",
  "blog-front.service",
  "blog-stubborn.service",
  "systemd-growfs@data.service",
];
/** Of those, what runs (and so stops and starts again), with the bind mount that goes with blog-data-dirs. */
const RUNNING = [BIND, "blog-app.service", "blog-app.timer", "blog-backend.service", "blog-data-dirs.service", "blog-fragile.service", "blog-front.service", "blog-stubborn.service"].sort();

/**
 * A fresh 16 MiB ext4 volume as Hetzner makes one, in use: the previous one released and detached,
 * this one attached and brought into use by data-volume.sh attach (labelled, mounted at /data,
 * what waited for it started).
 */
function useVolume(): string {
  releaseVolumes();
  const n = ++count;
  const image = path.join(work, `volume-${n}.img`);
  fs.writeFileSync(image, "");
  fs.truncateSync(image, 16 * MIB);
  execFileSync("mkfs.ext4", ["-q", "-F", image]);
  const name = `scsi-0HC_Volume_${n}`;
  attachDisk(t(), image, name);
  attached.push(name);
  resetStartLimits();
  const r = run(path.join(repoRoot, "scripts", "data-volume.sh"), ["attach"], {
    env: scriptEnv(t(), { DATA_DEVICE: `/dev/disk/by-id/${name}`, CONNECT_ATTEMPTS: "2", CONNECT_TIMEOUT: "10", DEVICE_TIMEOUT: "3" }),
    timeoutMs: 60_000,
  });
  if (r.status !== 0) throw new Error(`data-volume.sh attach exited ${r.status}: ${r.stderr}`);
  return DATA;
}

/** Out of use (what needs /data stops with its mount unit) and detached. */
function releaseVolumes(): void {
  tryOnTarget(t(), "systemctl stop data.mount");
  for (const name of attached.splice(0)) detachDisk(t(), name);
}

/**
 * The tests stop and start the same units far more often than a host does: systemd refuses a
 * sixth start of a unit within 10 s (the default start limit, StartLimitBurst=5 in
 * StartLimitIntervalSec=10s). reset-failed resets that count before each run of a script.
 */
function resetStartLimits(): void {
  tryOnTarget(t(), "systemctl reset-failed");
}

function backup(file: string, mount = DATA, extra: Record<string, string> = {}): RunResult {
  resetStartLimits();
  return run(script, ["backup", file], { env: env(t(), mount, extra), timeoutMs: 60_000 });
}

function restore(file: string, mount = DATA, extra: Record<string, string> = {}): RunResult {
  resetStartLimits();
  return run(script, ["restore", file], { env: env(t(), mount, extra), timeoutMs: 60_000 });
}

function env(on: Target, mount: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  return scriptEnv(on, { DATA_MOUNT: mount, CONNECT_ATTEMPTS: "2", CONNECT_TIMEOUT: "10", START_TIMEOUT: "10", ...extra });
}

/** The units a message of the script lists after `prefix` ("stopped: a b c"), sorted. */
function listed(stderr: string, prefix: string): string[] {
  const line = stderr.split("\n").find((l) => l.includes(prefix)) ?? "";
  return line.slice(line.indexOf(prefix) + prefix.length).split(" ").filter((u) => u !== "").sort();
}

/** The units of RUNNING that are active now. */
function activeOf(units: string[]): string[] {
  return units.filter((u) => unitState(t(), u) === "active").sort();
}

/** Files of various owners and modes, a symlink, a sticky directory, a user xattr and an ACL. */
function fillVolume(on: Target, mount: string): void {
  onTarget(
    on,
    `set -e; cd ${mount}
     mkdir -p var/lib/private/blog-backend srv empty
     chmod 0700 var/lib/private
     printf 'posts of the blog\\n' > var/lib/private/blog-backend/db
     head -c 200000 /dev/urandom > var/lib/private/blog-backend/blob
     chown -R 61184:61184 var/lib/private/blog-backend
     chmod 0640 var/lib/private/blog-backend/db
     printf 'api key\\n' > srv/secret && chmod 0600 srv/secret
     printf 'owned by 1234\\n' > srv/other && chown 1234:2345 srv/other && chmod 0604 srv/other
     ln -s ../srv/secret var/link
     chmod 1777 empty
     touch -d '2020-01-02 03:04:05' srv/secret`,
  );
  onTarget(
    on,
    `python3 -c '
import os, struct
u = 0xFFFFFFFF
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in [(1, 6, u), (2, 4, 1234), (4, 0, u), (0x10, 4, u), (0x20, 0, u)])
os.setxattr("${mount}/srv/other", "system.posix_acl_access", acl)
os.setxattr("${mount}/srv/other", "user.note", b"kept")
'`,
  );
}

const skipped = `\\( -path ./lost+found -o -path './.before-restore-*' -o -path './.failed-restore-*' \\) -prune -o`;

/** Every entry under dir (a path inside the target), as "path type uid:gid mode size mtime link sha256". */
function manifest(on: Target, dir: string, skip = true): string[] {
  const out = onTarget(
    on,
    `cd ${dir} && find . ${skip ? skipped : ""} -printf '%p %y %U:%G %m %s %T@ %l\\n' | while read -r p y o m s tm l; do
       sum=-; [ "$y" = f ] && sum=$(sha256sum "$p" | cut -c1-16)
       echo "$p $y $o $m $s \${tm%.*} $l $sum"
     done | sort`,
  );
  return out.split("\n").filter((l) => l !== "");
}

/** The xattrs of a file inside the target, "name=hex" sorted. */
function xattrs(on: Target, file: string): string {
  return onTarget(
    on,
    `python3 -c 'import os; print(" ".join(sorted(n + "=" + os.getxattr("${file}", n).hex() for n in os.listxattr("${file}"))))'`,
  );
}

/** The archive's verbose listing as "name perms uid/gid". */
function listing(file: string): string[] {
  return run("tar", ["--numeric-owner", "-tvzf", file])
    .stdout.split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const f = l.split(/\s+/);
      const name = f.slice(5).join(" ").replace(/ -> .*$/, "").replace(/\/$/, "");
      return `${name === "." ? "." : name} ${f[0].replace(/[+.]$/, "")} ${f[1]}`;
    })
    .sort();
}

/** The same for the volume, from find. */
function volumeListing(on: Target, mount: string): string[] {
  return onTarget(on, `cd ${mount} && find . ${skipped} -printf '%p %M %U/%G\\n' | sort`)
    .split("\n")
    .filter((l) => l !== "")
    .sort();
}

function sha256(file: string): string {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

function tarGz(name: string, members: [string, string][]): string {
  const file = path.join(work, name);
  // Python's tarfile writes the members as given, even ones tar could not extract.
  execFileSync("python3", [
    "-c",
    `import io, json, sys, tarfile
with tarfile.open(sys.argv[1], "w:gz") as t:
    for name, data in json.loads(sys.argv[2]):
        i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data.encode()))`,
    file,
    JSON.stringify(members),
  ]);
  return file;
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "blog-data-backup-"));
  target = startTarget();
  const system = buildClosure({ name: "data-backup", dataVolume: true, services: { "blog-backend": [] }, units: UNITS });
  const r = installSystem(t(), system);
  if (r.status !== 0) throw new Error(`installing the data system failed: ${r.stderr}${r.stdout}`);
});

afterAll(() => {
  stopTarget(target); // detaches every disk still attached
  fs.rmSync(work, { recursive: true, force: true });
});

describe("backup", () => {
  let mount: string;
  let archive: string;

  beforeAll(() => {
    mount = useVolume();
    fillVolume(t(), mount);
  });

  test("copies DATA_MOUNT into FILE (mode 0600): the listing is the volume's, numeric owners and modes included; one session after the wait", () => {
    archive = path.join(work, "blog-data.tar.gz");
    const before = sshConnections(t());

    const r = backup(archive, mount);

    expect(listed(r.stderr, "stopping what needs /data: ")).toEqual(NEEDING);
    expect(r.stderr).toMatch(new RegExp(`backup: wrote ${archive} \\(\\d+ bytes, .*, 12 entries; mode 0600\\)`));
    expect(r.stderr).toContain("store it encrypted");
    expect(r.status).toBe(0);
    expect(fs.statSync(archive).mode & 0o777).toBe(0o600);
    expect(fs.existsSync(`${archive}.partial`)).toBe(false);
    expect(sshConnections(t()) - before).toBe(2); // wait_for_ssh's `true`, then the copy
    const names = listing(archive);
    expect(names).toEqual(volumeListing(t(), mount));
    expect(names).toContain("./srv/other -rw-r----- 1234/2345"); // the ACL sets the group bits (its mask)
    expect(names).toContain("./srv/secret -rw------- 0/0");
    expect(names).toContain("./var/lib/private/blog-backend/db -rw-r----- 61184/61184");
    expect(names).toContain("./var/lib/private drwx------ 0/0");
    expect(names.some((n) => n.startsWith("./lost+found"))).toBe(false);
  });

  test("refuses an existing FILE (exit 1): it stays as it was, and the host is not contacted", () => {
    const archive = path.join(work, "existing.tar.gz");
    fs.writeFileSync(archive, "an earlier backup\n");
    const sum = sha256(archive);
    const before = sshConnections(t());

    const r = backup(archive, mount);

    expect(r.stderr).toContain(`FILE '${archive}' exists; backup never overwrites a file`);
    expect(r.status).toBe(1);
    expect(sha256(archive)).toBe(sum);
    expect(fs.existsSync(`${archive}.partial`)).toBe(false);
    expect(sshConnections(t())).toBe(before);
  });

  test("refuses a DATA_MOUNT that is not a mount point (exit 2): no FILE, no FILE.partial", () => {
    onTarget(t(), "mkdir -p /run/blog-data-none");
    const file = path.join(work, "none.tar.gz");

    const r = backup(file, "/run/blog-data-none");

    expect(r.stderr).toContain("refused: /run/blog-data-none is not a mount point: the host has no data volume mounted there");
    expect(r.stderr).toContain("Nothing was changed.");
    expect(r.status).toBe(2);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.existsSync(`${file}.partial`)).toBe(false);
  });

  test("leaves out the content earlier restores moved aside", () => {
    onTarget(t(), `mkdir -p ${mount}/.before-restore-20260101T000000Z && echo old > ${mount}/.before-restore-20260101T000000Z/f`);
    const file = path.join(work, "without-aside.tar.gz");

    const r = backup(file, mount);

    expect(r.status).toBe(0);
    expect(listing(file).some((n) => n.includes(".before-restore-"))).toBe(false);
    onTarget(t(), `rm -rf ${mount}/.before-restore-20260101T000000Z`);
  });
});

describe("restore", () => {
  let mount: string;
  let archive: string;
  let original: string[];
  let originalXattrs: string;

  beforeAll(() => {
    mount = useVolume();
    fillVolume(t(), mount);
    original = manifest(t(), mount);
    originalXattrs = xattrs(t(), `${mount}/srv/other`);
    archive = path.join(work, "to-restore.tar.gz");
    const r = backup(archive, mount);
    if (r.status !== 0) throw new Error(`backup exited ${r.status}: ${r.stderr}`);
  });

  test("into a changed DATA_MOUNT: the exact content again (bytes, owners, modes, times, ACL, xattrs); the previous content kept under .before-restore-*", () => {
    onTarget(
      t(),
      `set -e; cd ${mount}
       printf 'rewritten\\n' > var/lib/private/blog-backend/db
       chown 0:0 srv/other && chmod 0644 srv/other
       rm -rf empty var/link
       printf 'new\\n' > added`,
    );
    const changed = manifest(t(), mount);
    expect(changed).not.toEqual(original);
    const before = sshConnections(t());

    const r = restore(archive, mount);

    expect(listed(r.stderr, "stopping what needs /data: ")).toEqual([...NEEDING, BIND].sort());
    expect(r.stderr).toMatch(/moved the current content of \S+ \(3 entries\) to \S+\/\.before-restore-\d{8}T\d{6}Z(-\d+)?/);
    expect(r.stderr).not.toContain("error:");
    expect(r.status).toBe(0);
    expect(sshConnections(t()) - before).toBe(2); // wait_for_ssh's `true`, then the restore
    expect(manifest(t(), mount)).toEqual(original);
    expect(xattrs(t(), `${mount}/srv/other`)).toBe(originalXattrs);
    const aside = onTarget(t(), `cd ${mount} && ls -d .before-restore-*`);
    expect(aside).toMatch(/^\.before-restore-\d{8}T\d{6}Z(-\d+)?$/);
    expect(manifest(t(), `${mount}/${aside}`, false).filter((l) => !l.startsWith(". "))).toEqual(
      changed.filter((l) => !l.startsWith(". ")),
    );
    expect(onTarget(t(), `stat -c '%a %U' ${mount}/${aside}`)).toBe("700 root");
    expect(r.stderr).toContain(`the previous content of ${mount} is in ${mount}/${aside}; once the restore is confirmed, delete it on the host: rm -rf ${mount}/${aside}`);
    expect(onTarget(t(), `test -d ${mount}/lost+found && echo kept`)).toBe("kept");
  });

  test.each([
    ["a missing FILE", "missing.tar.gz", "does not exist"],
    ["a FILE that is not gzip", "plain.tar.gz", "is not a readable gzip-compressed tar archive"],
    ["a gzip FILE that is not a tar", "text.gz", "holds no tar entries"],
  ])("refuses %s (exit 1) without contacting the host", (_what, name, message) => {
    const file = path.join(work, name);
    if (name === "plain.tar.gz") fs.writeFileSync(file, "not an archive\n");
    if (name === "text.gz") execFileSync("sh", ["-c", `echo 'just text' | gzip > ${file}`]);
    const before = sshConnections(t());
    const content = manifest(t(), mount, false);

    const r = restore(file, mount);

    expect(r.stderr).toContain(`FILE '${file}' ${message}`);
    expect(r.stderr).toContain("nothing was changed");
    expect(r.status).toBe(1);
    expect(sshConnections(t())).toBe(before);
    expect(manifest(t(), mount, false)).toEqual(content);
  });

  test("an archive that does not extract: exit 4, the previous content moved back as it was, what was extracted kept apart", () => {
    // ./a as a file, then ./a/b: tar lists it, and cannot extract the second.
    const bad = tarGz("bad.tar.gz", [
      ["./a", "a\n"],
      ["./a/b", "b\n"],
    ]);
    const content = manifest(t(), mount);
    const asideBefore = onTarget(t(), `cd ${mount} && ls -d .before-restore-* | wc -l`);

    const r = restore(bad, mount);

    expect(r.stderr).toContain("./a/b: Cannot open: Not a directory");
    expect(r.stderr).toContain("error: restore: tar could not extract the archive (exit 2");
    expect(r.stderr).toMatch(/restore failed; the previous content of \S+ was moved back, as it was; what tar had extracted is in \S+\/\.failed-restore-\d{8}T\d{6}Z(-\d+)?/);
    expect(r.status).toBe(4);
    expect(manifest(t(), mount)).toEqual(content);
    expect(onTarget(t(), `cd ${mount} && ls -d .before-restore-* | wc -l`)).toBe(asideBefore);
    expect(onTarget(t(), `cat ${mount}/.failed-restore-*/a`)).toBe("a");
  });

  test("not enough free space on the volume: refused (exit 2), nothing moved", () => {
    // 20 MiB of zeros: a small archive of more than the 16 MiB volume holds.
    const big = path.join(work, "big");
    fs.mkdirSync(big);
    fs.writeFileSync(path.join(big, "zeros"), "");
    fs.truncateSync(path.join(big, "zeros"), 20 * MIB);
    const file = path.join(work, "big.tar.gz");
    execFileSync("tar", ["-czf", file, "-C", big, "."]);
    const content = manifest(t(), mount, false);

    const r = restore(file, mount);

    expect(r.stderr).toMatch(/refused: \S+ has [\d.]+MiB free and the archive needs about 20MiB/);
    expect(r.stderr).toContain("Nothing was changed.");
    expect(r.status).toBe(2);
    expect(manifest(t(), mount, false)).toEqual(content);
  });

  test("onto a new volume: restored; only the state directories the system made on it are kept aside", () => {
    const fresh = useVolume();
    // What the system made on it when it came into use (blog-data-dirs.service, the backend's state).
    expect(onTarget(t(), `cd ${fresh} && ls -A`)).toBe("lost+found\nvar");

    const r = restore(archive, fresh);

    expect(r.stderr).toMatch(/moved the current content of \/data \(1 entries\) to \/data\/\.before-restore-/);
    expect(r.status).toBe(0);
    expect(manifest(t(), fresh)).toEqual(original);
    expect(onTarget(t(), `ls -A ${fresh} | grep -c before-restore || true`)).toBe("1");
  });

  test("a host that presents another host key: refused (exit 2), nothing changed", () => {
    const other = path.join(work, "other-host-key");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", other]);
    const content = manifest(t(), mount, false);

    const r = restore(archive, mount, { HOST_KEY: fs.readFileSync(`${other}.pub`, "utf8").trim() });

    expect(r.stderr).toContain("presents a host key other than the pinned HOST_KEY");
    expect(r.status).toBe(2);
    expect(manifest(t(), mount, false)).toEqual(content);
  });

  test("refuses a DATA_MOUNT that is not a mount point (exit 2)", () => {
    onTarget(t(), "mkdir -p /run/blog-data-none");

    const r = restore(archive, "/run/blog-data-none");

    expect(r.stderr).toContain("refused: /run/blog-data-none is not a mount point");
    expect(r.status).toBe(2);
    expect(onTarget(t(), "ls -A /run/blog-data-none")).toBe("");
  });
});

describe("the host from the stack (pulumi stack output --json)", () => {
  let mount: string;
  let bin: string;

  beforeAll(() => {
    mount = useVolume();
    bin = path.join(work, "pulumi-bin");
    fs.mkdirSync(bin);
    fs.writeFileSync(
      path.join(bin, "pulumi"),
      `#!/bin/sh\nprintf '%s\\n' "$*" > ${work}/pulumi.args\npwd > ${work}/pulumi.cwd\ncat ${work}/pulumi.json\n`,
      { mode: 0o755 },
    );
  });

  /** PATH without any pulumi but ours. */
  function pathWith(dir?: string): string {
    const rest = (process.env.PATH ?? "").split(":").filter((d) => d !== "" && !fs.existsSync(path.join(d, "pulumi")));
    return [...(dir ? [dir] : []), ...rest].join(":");
  }

  function fromStack(outputs: unknown, withPulumi = true): RunResult {
    fs.writeFileSync(path.join(work, "pulumi.json"), JSON.stringify(outputs, null, 2));
    const e = env(t(), mount, { PATH: pathWith(withPulumi ? bin : undefined) });
    delete e.TARGET_HOST;
    delete e.HOST_KEY;
    const file = path.join(work, `from-stack-${++count}.tar.gz`);
    resetStartLimits();
    return run(script, ["backup", file], { env: e, timeoutMs: 60_000 });
  }

  test("TARGET_HOST and HOST_KEY unset: both come from the current stack's outputs ipv4 and hostKey", () => {
    const r = fromStack({ ipv4: t().addr4, ipv6: null, hostKey: t().hostKey, url: "https://blog.example.org/" });

    expect(r.stderr).toContain(`TARGET_HOST=${t().addr4} (stack output)`);
    expect(r.stderr).toContain("(stack output)");
    expect(r.status).toBe(0);
    expect(fs.readFileSync(path.join(work, "pulumi.args"), "utf8").trim()).toBe("stack output --json --show-secrets");
    expect(fs.readFileSync(path.join(work, "pulumi.cwd"), "utf8").trim()).toBe(repoRoot);
  });

  test("pulumi not on PATH: bad input (exit 1) that says what to set", () => {
    const r = fromStack({}, false);

    expect(r.stderr).toContain("TARGET_HOST and HOST_KEY are not both set, and pulumi is not on PATH");
    expect(r.status).toBe(1);
  });

  test.each([
    [{ ipv4: null, ipv6: null, hostKey: "ssh-ed25519 AAAA" }, "the stack has no output ipv4 or ipv6"],
    [{ ipv4: "127.0.0.1" }, "the stack has no output hostKey"],
    [[], "the stack has no output ipv4 or ipv6"],
  ])("outputs %j: bad input (exit 1)", (outputs, message) => {
    const before = sshConnections(t());

    const r = fromStack(outputs);

    expect(r.stderr).toContain(message);
    expect(r.status).toBe(1);
    expect(sshConnections(t())).toBe(before);
  });
});

describe("input", () => {
  test.each([
    [[], {}, "a verb is required: backup FILE or restore FILE"],
    [["copy", "x.tar.gz"], {}, "unknown verb 'copy'"],
    [["backup"], {}, "FILE is required: data-backup.sh backup FILE"],
    [["restore", "x.tar.gz", "extra"], {}, "unexpected argument 'extra' after FILE"],
    [["backup", "new.tar.gz"], { DATA_MOUNT: "/" }, "DATA_MOUNT='/' is not valid"],
    [["backup", "new.tar.gz"], { TARGET_PORT: "ssh" }, "TARGET_PORT='ssh' is not valid"],
    [["backup", "new.tar.gz"], { TARGET_HOST: "-oProxyCommand=x" }, "TARGET_HOST='-oProxyCommand=x' is not valid"],
    [["backup", "new.tar.gz"], { HOST_KEY: "not a key" }, "HOST_KEY='not a key' is not valid"],
  ])("%j with %j is bad input (exit 1)", (args, extra, message) => {
    const before = sshConnections(t());

    const r = run(script, args as string[], { env: env(t(), DATA, extra), timeoutMs: 30_000, cwd: work });

    expect(r.stderr).toContain(message);
    expect(r.status).toBe(1);
    expect(sshConnections(t())).toBe(before);
    expect(fs.existsSync(path.join(work, "new.tar.gz.partial"))).toBe(false);
  });

  test("--help prints the interface", () => {
    const help = run(script, ["--help"], { timeoutMs: 10_000 });

    expect(help.status).toBe(0);
    expect(help.stdout).toContain("data-backup.sh backup FILE");
    expect(help.stdout).toContain("data-backup.sh restore FILE");
    expect(help.stdout).toContain("Exit codes:");
  });

  test("even traced with bash -x, the private key is never printed (backup and restore)", () => {
    const mount = useVolume();
    fillVolume(t(), mount);
    const secretLines = t().clientKey.split("\n").filter((l) => l.length > 20);
    const file = path.join(work, "traced.tar.gz");

    resetStartLimits();
    const b = run("bash", ["-x", script, "backup", file], { env: env(t(), mount, {}), timeoutMs: 60_000 });
    resetStartLimits();
    const r = run("bash", ["-x", script, "restore", file], { env: env(t(), mount, {}), timeoutMs: 60_000 });

    expect(b.stderr.split("\n").filter((l) => l.startsWith("error:"))).toEqual([]);
    expect(r.stderr.split("\n").filter((l) => l.startsWith("error:"))).toEqual([]);
    expect(b.status).toBe(0);
    expect(r.status).toBe(0);
    expect(b.stderr).toContain("+ ");
    for (const line of secretLines) expect(b.stdout + b.stderr + r.stdout + r.stderr).not.toContain(line);
  });
});

test.each(["scripts/data-backup.sh", "scripts/lib/data-target.sh", "scripts/data-volume.sh"])("%s passes shellcheck", (file) => {
  const r = run("shellcheck", ["-x", "--source-path=SCRIPTDIR", file], { timeoutMs: 60_000, cwd: repoRoot });
  expect(r.stdout + r.stderr).toBe("");
  expect(r.status).toBe(0);
});

// The unit bookkeeping on the real systemd: which units stop, that exactly those start again, on
// every path.
describe("the units that need the volume", () => {
  let mount: string;

  beforeAll(() => {
    mount = useVolume();
    fillVolume(t(), mount);
  });

  afterEach(() => {
    tryOnTarget(t(), "rm -f /run/blog-test-slow-stop /run/blog-test-no-start; systemctl reset-failed; systemctl start default.target");
  });

  test("backup stops the units that need /data (through its bind mount, other services and a timer) and starts exactly the stopped ones again", () => {
    expect(activeOf(RUNNING)).toEqual(RUNNING);
    const other = onTarget(t(), "systemctl show -p InvocationID --value blog-other.service");
    const file = path.join(work, "systemd.tar.gz");

    const r = backup(file, mount);

    expect(r.status).toBe(0);
    expect(listed(r.stderr, "stopping what needs /data: ")).toEqual(NEEDING);
    expect(listed(r.stderr, "stopped: ")).toEqual(RUNNING);
    expect(listed(r.stderr, "started again: ")).toEqual(RUNNING);
    expect(activeOf(RUNNING)).toEqual(RUNNING);
    expect(unitState(t(), "blog-idle.service")).toBe("inactive"); // it was not running
    expect(onTarget(t(), "systemctl show -p InvocationID --value blog-other.service")).toBe(other);
    expect(fs.existsSync(file)).toBe(true);
  });

  test("restore also stops the bind mounts (to bind the restored directories); a failed extraction starts everything again (exit 4)", () => {
    const file = path.join(work, "systemd-restore.tar.gz");
    expect(backup(file, mount).status).toBe(0);

    const ok = restore(file, mount);
    expect(ok.stderr).toContain("restored");
    expect(ok.status).toBe(0);
    expect(listed(ok.stderr, "stopping what needs /data: ")).toEqual([...NEEDING, BIND].sort());
    expect(listed(ok.stderr, "started again: ")).toEqual(RUNNING);

    const bad = restore(tarGz("systemd-bad.tar.gz", [["./a", "a\n"], ["./a/b", "b\n"]]), mount);

    expect(bad.status).toBe(4);
    expect(listed(bad.stderr, "started again: ")).toEqual(RUNNING);
    expect(activeOf(RUNNING)).toEqual(RUNNING);
  });

  test("a unit that does not stop within START_TIMEOUT: refused, what did stop started again (once it is down, exit 4 while it is not), no FILE", async () => {
    onTarget(t(), "touch /run/blog-test-slow-stop");
    const file = path.join(work, "systemd-nostop.tar.gz");

    const r = backup(file, mount, { START_TIMEOUT: "2" });

    // Still stopping when the others are started again: that start waits for it, past START_TIMEOUT.
    expect(r.stderr).toContain("could not stop blog-stubborn.service (deactivating) within 2s (START_TIMEOUT)");
    expect([2, 4]).toContain(r.status);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.existsSync(`${file}.partial`)).toBe(false);
    // Its stop finishes later; then everything runs again.
    expect(await waitForAsync(() => unitState(t(), "blog-stubborn.service") !== "deactivating", 20_000)).toBe(true);
    onTarget(t(), "rm -f /run/blog-test-slow-stop; systemctl start default.target");
    expect(activeOf(RUNNING)).toEqual(RUNNING);
  });

  test("a backup killed while the host stops the units: no FILE, no FILE.partial, and the host starts the stopped units again", async () => {
    onTarget(t(), "touch /run/blog-test-slow-stop");
    const file = path.join(work, "systemd-killed.tar.gz");
    resetStartLimits();
    const child = spawn(script, ["backup", file], { env: env(t(), mount, {}), stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const done = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      expect(await waitForAsync(() => stderr.includes("stopping what needs /data"), 20_000)).toBe(true);

      child.kill("SIGTERM");

      expect(await done).toBe(143);
      // Its SSH session went with it, while the host was still stopping units.
      expect(await waitForAsync(() => sessions().length === 0, 1_500)).toBe(true);
    } finally {
      child.kill("SIGKILL");
    }
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.existsSync(`${file}.partial`)).toBe(false);
    expect(await waitForAsync(() => activeOf(RUNNING).length === RUNNING.length, 30_000)).toBe(true);
    expect(stderr).not.toContain("started again"); // the host said so to a connection that was gone
  });

  test("a unit that does not start again: the archive is kept, exit 4 naming the unit", () => {
    onTarget(t(), "touch /run/blog-test-no-start");
    const file = path.join(work, "systemd-nostart.tar.gz");

    const r = backup(file, mount);

    expect(r.stderr).toContain("not running: blog-fragile.service (failed)");
    expect(r.stderr).toContain(`backup: wrote ${file}`);
    expect(r.stderr).toContain("but units that were stopped for it did not start again");
    expect(r.status).toBe(4);
    expect(run("tar", ["-tzf", file]).status).toBe(0);
  });
});

/** Pids of data-backup.sh's SSH sessions (ssh or its timeout) still running. */
function sessions(): number[] {
  return fs
    .readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        const argv = fs.readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
        return /(^|\/)(ssh|timeout)$/.test(argv[0]) && argv.some((a) => a.includes("' data-backup backup "));
      } catch {
        return false;
      }
    })
    .map(Number);
}
