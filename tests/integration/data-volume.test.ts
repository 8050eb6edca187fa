// scripts/data-volume.sh against a real target (harness/target.sh) and real block devices: each
// "volume" is an image file that target.sh attach-disk makes a loop device, linked inside the
// target as /dev/disk/by-id/scsi-0HC_Volume_<n> (the target's own /dev/disk: this machine's /dev
// is not written to). The target has no systemd, so the script takes its fallback and mounts the
// device itself; the systemd path (udev, the mount unit, default.target) is not run here, but for
// release's, against a stand-in systemctl in a target of its own (its describe). Each
// test mounts at its own /run/blog-data-<n>: the target's /run is a tmpfs of its own, so no
// directory appears on this machine.
import { createHash, randomBytes } from "crypto";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import {
  Target,
  attachDisk,
  closedPort,
  detachDisk,
  onTarget,
  repoRoot,
  run,
  runScript,
  scriptEnv,
  sshConnections,
  startTarget,
  stopTarget,
  waitFor,
} from "./harness/target";
import { installFakeSystemctl } from "./harness/fake-systemctl";

jest.setTimeout(120_000);

const MIB = 1024 * 1024;
let target: Target | undefined;
let work: string;
let devDiskBefore: boolean;
let count = 0;

function t(): Target {
  if (!target) throw new Error("target not started");
  return target;
}

interface Volume {
  image: string;
  device: string;
  mount: string;
}

/**
 * A 16 MiB volume attached to the target: "ext4" as Hetzner formats one (no label), "ext4:<label>",
 * "swap" (another signature), or "none" (no file system; some data inside, so a write would show).
 */
function volume(kind: string, on: Target = t()): Volume {
  const n = ++count;
  const image = path.join(work, `volume-${n}.img`);
  fs.writeFileSync(image, "");
  fs.truncateSync(image, 16 * MIB);
  if (kind === "ext4") execFileSync("mkfs.ext4", ["-q", "-F", image]);
  else if (kind.startsWith("ext4:")) execFileSync("mkfs.ext4", ["-q", "-F", "-L", kind.slice(5), image]);
  else if (kind === "swap") execFileSync("mkswap", [image], { stdio: "ignore" });
  else {
    const fd = fs.openSync(image, "r+");
    fs.writeSync(fd, randomBytes(64 * 1024), 0, 64 * 1024, 4 * MIB);
    fs.closeSync(fd);
  }
  attachDisk(on, image, `scsi-0HC_Volume_${n}`);
  return { image, device: `/dev/disk/by-id/scsi-0HC_Volume_${n}`, mount: `/run/blog-data-${n}` };
}

function sha256(file: string): string {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

function dataVolume(verb: string, v: Volume, extra: Record<string, string> = {}, on: Target = t()) {
  return run(path.join(repoRoot, "scripts", "data-volume.sh"), [verb], {
    env: scriptEnv(on, {
      DATA_DEVICE: v.device,
      DATA_MOUNT: v.mount,
      CONNECT_ATTEMPTS: "2",
      CONNECT_TIMEOUT: "10",
      DEVICE_TIMEOUT: "3",
      ...extra,
    }),
    timeoutMs: 60_000,
  });
}

/** "SOURCE FSTYPE" of what is mounted at the path inside the target ("" if nothing). */
function mountedAt(mountPoint: string, on: Target = t()): string {
  return onTarget(on, `findmnt -n -o SOURCE,FSTYPE --mountpoint ${mountPoint} || true`).replace(/\s+/g, " ");
}

function label(image: string): string {
  return run("blkid", ["-p", "-o", "value", "-s", "LABEL", image]).stdout.trim();
}

/** The ext4 superblock's feature list, read from the image (needs_recovery: mounted, or not unmounted cleanly). */
function features(image: string): string {
  return run("dumpe2fs", ["-h", image]).stdout.split("\n").find((l) => l.startsWith("Filesystem features:")) ?? "";
}

beforeAll(() => {
  devDiskBefore = fs.existsSync("/dev/disk");
  work = fs.mkdtempSync(path.join(os.tmpdir(), "blog-data-volume-"));
  target = startTarget();
});

afterAll(() => {
  stopTarget(target); // detaches every disk still attached
  fs.rmSync(work, { recursive: true, force: true });
});

describe("attach", () => {
  let v: Volume;

  test("labels an unlabelled ext4 volume (as Hetzner formats one) and mounts it at DATA_MOUNT", () => {
    v = volume("ext4");
    expect(label(v.image)).toBe("");

    const r = dataVolume("attach", v);

    expect(r.stderr).toContain(`labelled ${v.device} 'blog-data'`);
    expect(r.stderr).toContain(`mounted ${v.device} at ${v.mount}`);
    expect(r.status).toBe(0);
    expect(label(v.image)).toBe("blog-data");
    expect(mountedAt(v.mount)).toMatch(/^\/dev\/loop\d+ ext4$/);
  });

  test("a second attach changes nothing, in one SSH session after the wait for SSH", () => {
    const before = sshConnections(t());

    const r = dataVolume("attach", v);

    expect(r.stderr).toContain(`attach: nothing to do: ${v.device} is ext4 labelled 'blog-data' and mounted at ${v.mount}`);
    expect(r.stderr).not.toContain("labelled the unlabelled");
    expect(r.status).toBe(0);
    expect(onTarget(t(), `findmnt -n --mountpoint ${v.mount} | wc -l`)).toBe("1");
    expect(sshConnections(t()) - before).toBe(2); // wait_for_ssh's `true`, then the script
  });

  test("refuses a volume without a file system and does not write to it (exit 2)", () => {
    const none = volume("none");
    const sum = sha256(none.image);

    const r = dataVolume("attach", none);

    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`refused: ${none.device} has no file system`);
    expect(r.stderr).toContain("This script never formats a volume");
    expect(r.stderr).toContain(`mkfs.ext4 -L blog-data ${none.device}`);
    expect(r.stderr).toContain("Nothing was changed.");
    expect(sha256(none.image)).toBe(sum);
    expect(mountedAt(none.mount)).toBe("");
  });

  test("refuses an ext4 volume labelled for something else and does not write to it (exit 2)", () => {
    const other = volume("ext4:other-host");
    const sum = sha256(other.image);

    const r = dataVolume("attach", other);

    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`refused: ${other.device} holds an ext4 file system labelled 'other-host', not 'blog-data'`);
    expect(r.stderr).toContain(`e2label ${other.device} blog-data`);
    expect(sha256(other.image)).toBe(sum);
    expect(label(other.image)).toBe("other-host");
    expect(mountedAt(other.mount)).toBe("");
  });

  test("refuses another kind of file system and does not write to it (exit 2)", () => {
    const swap = volume("swap");
    const sum = sha256(swap.image);

    const r = dataVolume("attach", swap);

    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`refused: ${swap.device} holds a swap file system, not ext4`);
    expect(sha256(swap.image)).toBe(sum);
    expect(mountedAt(swap.mount)).toBe("");
  });

  test("refuses when DATA_MOUNT already holds another file system (exit 2)", () => {
    const second = volume("ext4");
    const sum = sha256(second.image);

    const r = dataVolume("attach", { ...second, mount: v.mount });

    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`refused: ${v.mount} already holds another file system`);
    expect(sha256(second.image)).toBe(sum);
    expect(label(second.image)).toBe("");
  });

  test("a device that does not appear within DEVICE_TIMEOUT is refused (exit 2)", () => {
    const r = dataVolume("attach", { image: "", device: "/dev/disk/by-id/scsi-0HC_Volume_404", mount: "/run/blog-data-404" }, { DEVICE_TIMEOUT: "2" });

    expect(r.status).toBe(2);
    expect(r.stderr).toContain("refused: /dev/disk/by-id/scsi-0HC_Volume_404 did not appear within 2s (DEVICE_TIMEOUT)");
  });

  test("an unreachable server is refused (exit 2)", () => {
    const r = dataVolume("attach", v, { TARGET_PORT: String(closedPort()), CONNECT_TIMEOUT: "4" });

    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/error: attach: timed out: .* did not answer after 2 attempts/);
  });
});

describe("release", () => {
  test("unmounts DATA_MOUNT cleanly and syncs: the image holds what was written, no journal to replay", () => {
    const v = volume("ext4");
    expect(dataVolume("attach", v).status).toBe(0);
    onTarget(t(), `echo written-before-release > ${v.mount}/note`);
    expect(features(v.image)).toContain("needs_recovery"); // mounted

    const r = dataVolume("release", v);

    expect(r.stderr).toContain(`unmounted ${v.mount}`);
    expect(r.stderr).toContain(`release: ${v.device} is out of use and unmounted, file systems synced: it can be detached`);
    expect(r.status).toBe(0);
    expect(mountedAt(v.mount)).toBe("");
    expect(features(v.image)).not.toContain("needs_recovery");
    expect(run("debugfs", ["-R", "cat /note", v.image]).stdout.trim()).toBe("written-before-release");
    expect(run("e2fsck", ["-n", v.image]).status).toBe(0);
  });

  test("a busy file system stays mounted and is refused (exit 2), naming who holds it; released once it is free", () => {
    const v = volume("ext4");
    expect(dataVolume("attach", v).status).toBe(0);
    const holder = Number(onTarget(t(), `cd ${v.mount} && (sleep 100 >/dev/null 2>&1 </dev/null & echo $!)`));
    try {
      const busy = dataVolume("release", v);

      expect(busy.status).toBe(2);
      expect(busy.stderr).toContain(`refused: ${v.mount} is busy and stays mounted (processes using it: ${holder} (sleep))`);
      expect(mountedAt(v.mount)).toMatch(/^\/dev\/loop\d+ ext4$/);
    } finally {
      process.kill(holder, "SIGKILL");
    }
    const r = dataVolume("release", v);
    expect(r.status).toBe(0);
    expect(mountedAt(v.mount)).toBe("");
  });

  test("nothing mounted: nothing to do (exit 0)", () => {
    const v = volume("ext4:blog-data");

    const r = dataVolume("release", v);

    expect(r.stderr).toContain(`release: ${v.mount} is not mounted: nothing to stop`);
    expect(r.status).toBe(0);
  });

  test("a server that does not answer within CONNECT_TIMEOUT: a loud warning, exit 0 (the volume can be detached)", () => {
    const v = volume("ext4:blog-data");

    const r = dataVolume("release", v, { TARGET_PORT: String(closedPort()), CONNECT_TIMEOUT: "4" });

    expect(r.status).toBe(0);
    expect(r.stderr).toContain("did not answer within CONNECT_TIMEOUT=4s");
    expect(r.stderr).toContain("the server may already be off or gone");
    expect(r.stderr).toContain("a Hetzner volume is attached to one server at a time, so the detach cannot leave two servers writing to it");
    expect(r.stderr).toContain("ext4 replays its journal the next time it is mounted");
    expect(r.stderr).not.toMatch(/^error:/m);
  });

  test("a server that answers with another host key, or refuses our key, is refused (exit 2), not taken as gone", () => {
    const v = volume("ext4");
    expect(dataVolume("attach", v).status).toBe(0);
    const other = path.join(work, "other-key");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", other]);

    const wrongHost = dataVolume("release", v, { HOST_KEY: fs.readFileSync(`${other}.pub`, "utf8").trim() });
    const wrongKey = dataVolume("release", v, { SSH_PRIVATE_KEY: fs.readFileSync(other, "utf8") });

    expect(wrongHost.status).toBe(2);
    expect(wrongHost.stderr).toContain("presents a host key other than the pinned HOST_KEY");
    expect(wrongKey.status).toBe(2);
    expect(wrongKey.stderr).toContain("refused our key");
    expect(wrongKey.stderr).not.toContain("warning:");
    expect(mountedAt(v.mount)).toMatch(/^\/dev\/loop\d+ ext4$/);
  });
});

// release on a NixOS host: the volume's device is mounted at DATA_MOUNT and bind-mounted at the
// services' state directories (nix/modules/data.nix), all one device. In a target of its own with
// /run/systemd/system (the script takes its systemd path) and a stand-in systemctl its SSH sessions
// find first on PATH (harness/fake-systemctl.ts): the units' mounts, unmounts and the service's
// process are real inside the target, and a stop takes down first whatever Requires= the unit, as
// systemd does: the service, the bind mount, then DATA_MOUNT.
describe("release with systemd (a stand-in systemctl): DATA_MOUNT and a bind mount of the same device", () => {
  let host: Target | undefined;
  let state: string;
  let bin: string;
  const h = (): Target => {
    if (!host) throw new Error("target not started");
    return host;
  };
  const service = "blog-backend.service";
  const dirs = "blog-data-dirs.service";
  const unitOf = (p: string) => run("systemd-escape", ["--path", "--suffix=mount", p]).stdout.trim();
  const active = () =>
    fs
      .readdirSync(path.join(state, "units"))
      .filter((u) => fs.existsSync(path.join(state, "units", u, "active")))
      .sort();
  const calls = () => fs.readFileSync(path.join(state, "log"), "utf8").split("\n").filter((l) => l !== "");
  const servicePid = () => Number(fs.readFileSync(path.join(state, "service.pid"), "utf8").trim());
  /** Whether the process runs, and with its working directory under dir (inside the target). */
  const runsIn = (pid: number, dir: string) => onTarget(h(), `readlink /proc/${pid}/cwd || true`).startsWith(dir);

  interface Setup {
    v: Volume;
    bind: string;
    mountUnit: string;
    bindUnit: string;
  }

  /**
   * A volume, and the units of nix/modules/data.nix for it: DATA_MOUNT's mount unit, the service that
   * makes the bind source, the bind mount of <DATA_MOUNT>/var/lib/private/blog-backend at
   * /run/blog-state-<n>, and a service whose process works in the bind mount; all started through
   * the stand-in. bindStopUnmounts false: stopping the bind mount's unit leaves it mounted.
   */
  function mountedThroughUnits(opts: { bindStopUnmounts?: boolean } = {}): Setup {
    const v = volume("ext4:blog-data", h());
    const bind = v.mount.replace("/blog-data-", "/blog-state-");
    const source = `${v.mount}/var/lib/private/blog-backend`;
    const mountUnit = unitOf(v.mount);
    const bindUnit = unitOf(bind);
    const pidFile = path.join(state, "service.pid");
    const units: Record<string, Record<string, string>> = {
      [mountUnit]: {
        RequiredBy: `${dirs} ${bindUnit}`,
        ExecStart: `mkdir -p ${v.mount} && mount ${v.device} ${v.mount}`,
        ExecStop: `umount ${v.mount}`,
      },
      [dirs]: { RequiredBy: bindUnit, ExecStart: `install -d -m 0700 ${v.mount}/var/lib/private && install -d ${source}` },
      [bindUnit]: {
        RequiredBy: service,
        ExecStart: `mountpoint -q ${bind} || { mkdir -p ${bind} && mount --bind ${source} ${bind}; }`,
        ...(opts.bindStopUnmounts === false ? {} : { ExecStop: `umount ${bind}` }),
      },
      [service]: {
        ExecStart: `(cd ${bind} && exec sleep 300) >/dev/null 2>&1 & echo $! > ${pidFile}`,
        // Until it is gone (a zombie holds no mount).
        ExecStop: `pid=$(cat ${pidFile}); kill "$pid"; while s=$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null) && [ "$s" != Z ]; do sleep 0.05; done`,
      },
      "unrelated.service": {},
    };
    fs.rmSync(state, { recursive: true, force: true });
    for (const [name, props] of Object.entries(units)) {
      const dir = path.join(state, "units", name);
      fs.mkdirSync(dir, { recursive: true });
      for (const [prop, value] of Object.entries(props)) fs.writeFileSync(path.join(dir, prop), value);
    }
    onTarget(h(), `${bin}/systemctl start ${service} unrelated.service`);
    fs.writeFileSync(path.join(state, "log"), "");
    // The stand-in's Requires= brought up what the service needs, in the target.
    expect(active()).toEqual([bindUnit, dirs, mountUnit, service, "unrelated.service"].sort());
    expect(mountedAt(v.mount, h())).toMatch(/^\/dev\/loop\d+ ext4$/);
    expect(mountedAt(bind, h())).toMatch(/^\/dev\/loop\d+\[\/var\/lib\/private\/blog-backend\] ext4$/);
    expect(runsIn(servicePid(), bind)).toBe(true);
    return { v, bind, mountUnit, bindUnit };
  }

  /** The units the script reports it stopped with DATA_MOUNT's ("" if it did not say). */
  function reportedStopped(stderr: string, mountUnit: string): string[] {
    const line = stderr.split("\n").find((l) => l.includes(`stopped ${mountUnit} and what needed it: `)) ?? "";
    return line
      .slice(line.indexOf(": ", line.indexOf("what needed it")) + 2)
      .split(" ")
      .filter((u) => u !== "")
      .sort();
  }

  beforeAll(() => {
    host = startTarget();
    onTarget(h(), "mkdir -p /run/systemd/system");
    state = path.join(h().dir, "systemd-state");
    bin = installFakeSystemctl(h(), state);
  });
  afterAll(() => stopTarget(host)); // its processes (the services' sleeps) and disks with it

  test("stops DATA_MOUNT's unit: the service, then the bind mount, then DATA_MOUNT go down; the device is mounted nowhere, cleanly (exit 0)", () => {
    const { v, bind, mountUnit, bindUnit } = mountedThroughUnits();
    const pid = servicePid();
    onTarget(h(), `echo written-before-release > ${bind}/note`);

    const r = dataVolume("release", v, { START_TIMEOUT: "10" }, h());

    expect(r.stderr).not.toContain("also mounted at");
    expect(reportedStopped(r.stderr, mountUnit)).toEqual([bindUnit, dirs, service].sort());
    expect(r.stderr).toContain(`release: ${v.device} is out of use and unmounted, file systems synced: it can be detached`);
    expect(r.status).toBe(0);
    expect(calls()).toEqual([`stop ${mountUnit}`]);
    expect(active()).toEqual(["unrelated.service"]);
    expect(mountedAt(v.mount, h())).toBe("");
    expect(mountedAt(bind, h())).toBe("");
    expect(runsIn(pid, bind)).toBe(false);
    // The last mount of the file system went: its superblock says clean.
    expect(features(v.image)).not.toContain("needs_recovery");
    expect(run("debugfs", ["-R", "cat /var/lib/private/blog-backend/note", v.image]).stdout.trim()).toBe("written-before-release");
  });

  test("the bind mount stays mounted after the stop (kept outside the units): refused (exit 2), the stopped units started again, DATA_MOUNT mounted again", () => {
    const { v, bind, mountUnit, bindUnit } = mountedThroughUnits({ bindStopUnmounts: false });

    const r = dataVolume("release", v, { START_TIMEOUT: "10" }, h());

    expect(r.stderr).toContain(`still mounted at ${bind} (`);
    expect(r.stderr).toContain(`${mountUnit} and the units the stop took down (`);
    expect(r.stderr).toContain("were started again");
    expect(r.stderr).toContain("Nothing was changed.");
    expect(r.status).toBe(2);
    expect(calls()).toHaveLength(2);
    expect(calls()[0]).toBe(`stop ${mountUnit}`);
    // The mount unit itself too: nothing below may pull it in again.
    expect(calls()[1].split(" ").slice(1).sort()).toEqual([mountUnit, bindUnit, dirs, service].sort());
    expect(active()).toEqual([bindUnit, dirs, mountUnit, service, "unrelated.service"].sort());
    expect(mountedAt(v.mount, h())).toMatch(/^\/dev\/loop\d+ ext4$/);
    expect(onTarget(h(), `findmnt -n --mountpoint ${bind} | wc -l`)).toBe("1");
    expect(runsIn(servicePid(), bind)).toBe(true);
  });

  test("a process outside the units works in the bind mount: refused (exit 2), the units started again; released once it is gone", () => {
    const { v, bind, mountUnit, bindUnit } = mountedThroughUnits();
    const holder = Number(onTarget(h(), `cd ${bind} && (sleep 100 >/dev/null 2>&1 </dev/null & echo $!)`));
    try {
      const busy = dataVolume("release", v, { START_TIMEOUT: "10" }, h());

      expect(busy.stderr).toContain(`still mounted at ${bind} (processes using it: ${bind}: ${holder} (sleep)`);
      expect(busy.stderr).toContain("Nothing was changed.");
      expect(busy.status).toBe(2);
      expect(active()).toEqual([bindUnit, dirs, mountUnit, service, "unrelated.service"].sort());
      expect(mountedAt(v.mount, h())).toMatch(/^\/dev\/loop\d+ ext4$/);
      expect(onTarget(h(), `findmnt -n --mountpoint ${bind} | wc -l`)).toBe("1");
      expect(runsIn(servicePid(), bind)).toBe(true);
    } finally {
      process.kill(holder, "SIGKILL");
    }
    const r = dataVolume("release", v, { START_TIMEOUT: "10" }, h());
    expect(r.status).toBe(0);
    expect(mountedAt(v.mount, h())).toBe("");
    expect(mountedAt(bind, h())).toBe("");
  });
});

describe("input", () => {
  const v = (): Volume => ({ image: "", device: "/dev/disk/by-id/scsi-0HC_Volume_1", mount: "/run/blog-data-1" });

  test.each([
    [[], {}, "a verb is required: attach or release"],
    [["detach"], {}, "unknown verb 'detach'"],
    [["attach", "extra"], {}, "unexpected argument 'extra'"],
    [["attach"], { DATA_LABEL: "a-label-longer-than-16" }, "DATA_LABEL='a-label-longer-than-16' is not valid"],
    [["attach"], { DATA_MOUNT: "/" }, "DATA_MOUNT='/' is not valid"],
    [["attach"], { DATA_MOUNT: "/data/../etc" }, "DATA_MOUNT='/data/../etc' is not valid"],
    [["release"], { DATA_DEVICE: "/dev/sdb; reboot" }, "DATA_DEVICE='/dev/sdb; reboot' is not valid"],
    [["release"], { DATA_DEVICE: "" }, "DATA_DEVICE is not set"],
  ])("%j with %j is bad input (exit 1)", (args, extra, message) => {
    const before = sshConnections(t());
    const env = scriptEnv(t(), { DATA_DEVICE: v().device, DATA_MOUNT: v().mount, ...extra });

    const r = run(path.join(repoRoot, "scripts", "data-volume.sh"), args as string[], { env, timeoutMs: 30_000 });

    expect(r.stderr).toContain(message);
    expect(r.status).toBe(1);
    expect(sshConnections(t())).toBe(before);
  });

  test("--help prints the interface", () => {
    const help = run(path.join(repoRoot, "scripts", "data-volume.sh"), ["--help"], { timeoutMs: 10_000 });

    expect(help.status).toBe(0);
    expect(help.stdout).toContain("data-volume.sh attach");
    expect(help.stdout).toContain("Exit codes:");
  });

  test("even traced with bash -x, the private key is never printed", () => {
    const secretLines = t().clientKey.split("\n").filter((l) => l.length > 20);
    const env = scriptEnv(t(), { DATA_DEVICE: v().device, DATA_MOUNT: v().mount, DEVICE_TIMEOUT: "1" });

    const r = run("bash", ["-x", path.join(repoRoot, "scripts", "data-volume.sh"), "attach"], { env, timeoutMs: 60_000 });

    expect(r.stderr).toContain("+ ");
    for (const line of secretLines) expect(r.stdout + r.stderr).not.toContain(line);
  });
});

describe("the harness's disks (target.sh attach-disk, detach-disk)", () => {
  test("detach-disk takes a mounted disk away (its mount lazily) and frees its loop device; this machine's /dev is untouched", () => {
    const v = volume("ext4:blog-data");
    expect(dataVolume("attach", v).status).toBe(0);

    detachDisk(t(), path.basename(v.device));

    expect(mountedAt(v.mount)).toBe("");
    expect(onTarget(t(), `test -e ${v.device} && echo present || echo gone`)).toBe("gone");
    expect(run("losetup", ["-n", "-O", "NAME", "-j", v.image]).stdout.trim()).toBe("");
    expect(fs.existsSync("/dev/disk")).toBe(devDiskBefore);
  });

  test("stopping a target frees the loop devices of its disks, mounted or not", () => {
    const other = startTarget();
    const image = path.join(work, "stopped.img");
    fs.writeFileSync(image, "");
    fs.truncateSync(image, 16 * MIB);
    execFileSync("mkfs.ext4", ["-q", "-F", image]);
    try {
      attachDisk(other, image, "scsi-0HC_Volume_900");
      onTarget(other, "mkdir -p /run/d && mount /dev/disk/by-id/scsi-0HC_Volume_900 /run/d");
    } finally {
      stopTarget(other);
    }
    // The last user of the loop device (the namespace's mount) goes away with the namespace.
    expect(waitFor(() => run("losetup", ["-n", "-O", "NAME", "-j", image]).stdout.trim() === "", 10_000)).toBe(true);
  });
});

test.each(["scripts/data-volume.sh", "scripts/install.sh", "tests/integration/harness/target.sh"])("%s passes shellcheck", (script) => {
  const r = run("shellcheck", ["-x", "--source-path=SCRIPTDIR", script], { timeoutMs: 60_000, cwd: repoRoot });
  expect(r.stdout + r.stderr).toBe("");
  expect(r.status).toBe(0);
});

// install.sh's guard: nixos-anywhere (here a stand-in that only records that it ran) never starts
// when the disk the configuration's disko layout erases is an attached Hetzner Volume.
describe("install.sh with a volume attached", () => {
  let server: Target | undefined;
  let flake: string;
  let ran: string;
  let pinned: { publicKey: string; privateKey: string };
  let loop: string;

  beforeAll(() => {
    server = startTarget();
    const key = path.join(work, "pinned");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
    pinned = { publicKey: fs.readFileSync(`${key}.pub`, "utf8").trim(), privateKey: fs.readFileSync(key, "utf8") };
    const image = path.join(work, "install-volume.img");
    fs.writeFileSync(image, "");
    fs.truncateSync(image, 16 * MIB);
    execFileSync("mkfs.ext4", ["-q", "-F", "-L", "blog-data", image]);
    loop = attachDisk(server, image, "scsi-0HC_Volume_700");
    // Configurations whose disko disk is the volume (by another name), the server's own disk, or unset.
    const dir = path.join(work, "install-flake");
    fs.mkdirSync(dir);
    const disk = (device: string) => `{ config.disko.devices.disk.main.device = "${device}"; }`;
    fs.writeFileSync(
      path.join(dir, "flake.nix"),
      `{ outputs = { self }: { nixosConfigurations = {
        volume = ${disk(loop)};
        own = ${disk("/dev/disk/by-path/pci-0000:06:00.0-scsi-0:0:0:0")};
        nodisko = { config = { }; };
      }; }; }\n`,
    );
    flake = `path:${dir}`;
    ran = path.join(work, "nixos-anywhere.ran");
    fs.writeFileSync(path.join(work, "nixos-anywhere"), `#!/bin/sh\necho "$@" > ${ran}\nexit 1\n`, { mode: 0o755 });
  });
  afterAll(() => stopTarget(server));
  beforeEach(() => fs.rmSync(ran, { force: true }));

  const install = (configuration: string) =>
    runScript(
      "install.sh",
      scriptEnv(server!, {
        HOST_KEY: pinned.publicKey,
        HOST_KEY_PRIVATE: pinned.privateKey,
        // The key the server presents before the install (install.sh pins it): the target's own.
        BOOTSTRAP_HOST_KEY: server!.hostKey,
        FLAKE: flake,
        NIXOS_CONFIGURATION: configuration,
        NIXOS_ANYWHERE: path.join(work, "nixos-anywhere"),
        CONNECT_ATTEMPTS: "2",
        CONNECT_TIMEOUT: "10",
      }),
    );

  test("the disk disko erases resolves to the attached volume: refused (exit 2), nixos-anywhere never runs", () => {
    const r = install("volume");

    expect(r.stderr).toContain(
      `refused: the disk the install erases, ${loop}, is ${loop} on root@${server!.addr4}, which is the Hetzner Volume /dev/disk/by-id/scsi-0HC_Volume_700 (a data volume)`,
    );
    expect(r.status).toBe(2);
    expect(fs.existsSync(ran)).toBe(false);
  });

  test("a volume is attached and the disk cannot be told (no disko disk): refused (exit 2)", () => {
    const r = install("nodisko");

    expect(r.stderr).toContain("a Hetzner Volume is attached to the server and the disk the install erases cannot be told");
    expect(r.status).toBe(2);
    expect(fs.existsSync(ran)).toBe(false);
  });

  test("the disk is the server's own: the install goes on to nixos-anywhere", () => {
    const r = install("own");

    expect(r.stderr).toContain("the install erases /dev/disk/by-path/pci-0000:06:00.0-scsi-0:0:0:0");
    expect(r.stderr).toContain("no attached volume");
    expect(fs.existsSync(ran)).toBe(true);
    expect(r.status).toBe(4); // the stand-in nixos-anywhere fails on purpose
  });

  test("no volume attached: nothing is evaluated, the install goes on", () => {
    detachDisk(server!, "scsi-0HC_Volume_700");

    const r = install("nodisko");

    expect(r.stderr).toContain("no volume attached");
    expect(fs.existsSync(ran)).toBe(true);
  });
});
