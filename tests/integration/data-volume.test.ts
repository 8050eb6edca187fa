// scripts/data-volume.sh against a real target (harness/target.sh: a container with systemd as PID
// 1) running a system with the data volume's units (harness/closures.nix with dataVolume: /data and
// the backend's state directory bound from it, in its fstab as nix/modules/units/data.nix has them,
// mounted by systemd-fstab-generator's units; blog-data-dirs.service; a backend with
// RequiresMountsFor= on its state), and real block devices: each "volume" is an image file that
// target.sh attach-disk makes a loop device, whose node appears in the target, linked as
// /dev/disk/by-id/scsi-0HC_Volume_<n>. There is no udev inside: the target's udevadm makes the
// by-label link a change event would. One volume at a time is labelled blog-data: each test
// detaches the volumes it attached.
import { createHash, randomBytes } from "crypto";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import {
  Target,
  attachDisk,
  buildClosure,
  closedPort,
  detachDisk,
  installSystem,
  onTarget,
  repoRoot,
  run,
  runScript,
  scriptEnv,
  sshConnections,
  startTarget,
  stopTarget,
  tryOnTarget,
  unitState,
  waitFor,
} from "./harness/target";

jest.setTimeout(120_000);

const MIB = 1024 * 1024;
const STATE = "/var/lib/private/blog-backend";
const BIND_UNIT = "var-lib-private-blog\\x2dbackend.mount";
let target: Target | undefined;
let work: string;
let devDiskBefore: boolean;
let count = 0;
let attached: string[] = [];

function t(): Target {
  if (!target) throw new Error("target not started");
  return target;
}

interface Volume {
  image: string;
  device: string;
  name: string;
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
  const name = `scsi-0HC_Volume_${n}`;
  attachDisk(on, image, name);
  if (on === target) attached.push(name);
  return { image, device: `/dev/disk/by-id/${name}`, name };
}

function sha256(file: string): string {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

/**
 * The tests stop and start the same units far more often than a host does: systemd refuses a
 * sixth start of a unit within 10 s (its default start limit); reset-failed resets that count.
 */
function dataVolume(verb: string, v: Volume, extra: Record<string, string> = {}, on: Target = t()) {
  tryOnTarget(on, "systemctl reset-failed");
  return run(path.join(repoRoot, "scripts", "data-volume.sh"), [verb], {
    env: scriptEnv(on, {
      DATA_DEVICE: v.device,
      CONNECT_ATTEMPTS: "2",
      CONNECT_TIMEOUT: "10",
      DEVICE_TIMEOUT: "3",
      START_TIMEOUT: "20",
      ...extra,
    }),
    timeoutMs: 90_000,
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

/** The units the script reports it stopped with /data's mount unit. */
function reportedStopped(stderr: string): string[] {
  const line = stderr.split("\n").find((l) => l.includes("stopped data.mount and what needed it: ")) ?? "";
  return line.slice(line.indexOf("what needed it: ") + "what needed it: ".length).split(" ").filter((u) => u !== "").sort();
}

beforeAll(() => {
  devDiskBefore = fs.existsSync("/dev/disk");
  work = fs.mkdtempSync(path.join(os.tmpdir(), "blog-data-volume-"));
  target = startTarget();
  const system = buildClosure({ name: "data-volume", dataVolume: true, services: { "blog-backend": [] } });
  const r = installSystem(t(), system);
  if (r.status !== 0) throw new Error(`installing the data system failed: ${r.stderr}${r.stdout}`);
});

afterEach(() => {
  // Out of use first, as release leaves it (what needs it stops with /data's mount unit), then
  // detached: the next test's volume may be labelled blog-data too, one at a time.
  tryOnTarget(t(), "systemctl stop data.mount");
  for (const name of attached.splice(0)) detachDisk(t(), name);
});

afterAll(() => {
  stopTarget(target); // detaches every disk still attached
  fs.rmSync(work, { recursive: true, force: true });
});

test("the system without its volume boots and runs; what needs /data does not start, and nothing failed", () => {
  expect(unitState(t(), "data.mount")).toBe("inactive");
  expect(unitState(t(), "blog-backend.service")).toBe("inactive");
  expect(onTarget(t(), "systemctl --failed --no-legend --plain")).toBe("");
});

describe("attach", () => {
  test("labels an unlabelled ext4 volume (as Hetzner formats one), mounts it at /data (its mount unit) and starts what waited for it", () => {
    const v = volume("ext4");
    expect(label(v.image)).toBe("");

    const r = dataVolume("attach", v);

    expect(r.stderr).toContain(`labelled ${v.device} 'blog-data'`);
    expect(r.stderr).toContain(`mounted ${v.device} at /data (data.mount)`);
    expect(r.stderr).toContain("started default.target");
    expect(r.status).toBe(0);
    expect(label(v.image)).toBe("blog-data");
    expect(onTarget(t(), "readlink /dev/disk/by-label/blog-data")).toMatch(/^\.\.\/\.\.\/loop\d+$/);
    expect(mountedAt("/data")).toMatch(/^\/dev\/loop\d+ ext4$/);
    expect(mountedAt(STATE)).toMatch(/^\/dev\/loop\d+\[\/var\/lib\/private\/blog-backend\] ext4$/);
    expect(unitState(t(), "blog-backend.service")).toBe("active");

    // A second attach changes nothing, in one SSH session after the wait for SSH.
    const before = sshConnections(t());
    const again = dataVolume("attach", v);

    expect(again.stderr).toContain(`attach: nothing to do: ${v.device} is ext4 labelled 'blog-data' and mounted at /data`);
    expect(again.stderr).not.toContain(`labelled ${v.device}`);
    expect(again.status).toBe(0);
    expect(onTarget(t(), "findmnt -n --mountpoint /data | wc -l")).toBe("1");
    expect(sshConnections(t()) - before).toBe(2); // wait_for_ssh's `true`, then the script

    // A second volume, unlabelled: the host has its data volume already.
    const second = volume("ext4");
    const sum = sha256(second.image);
    const refused = dataVolume("attach", second);

    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/refused: \/dev\/disk\/by-label\/blog-data already names another device, \/dev\/loop\d+: two file systems labelled 'blog-data' on one host/);
    expect(sha256(second.image)).toBe(sum);
    expect(label(second.image)).toBe("");
  });

  test("refuses when /data already holds another file system (exit 2)", () => {
    onTarget(t(), "mkdir -p /data && mount -t tmpfs by-hand /data");
    try {
      const v = volume("ext4");
      const sum = sha256(v.image);

      const r = dataVolume("attach", v);

      expect(r.status).toBe(2);
      expect(r.stderr).toContain("refused: /data already holds another file system");
      expect(sha256(v.image)).toBe(sum);
      expect(label(v.image)).toBe("");
    } finally {
      tryOnTarget(t(), "umount /data");
    }
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
    expect(mountedAt("/data")).toBe("");
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
    expect(mountedAt("/data")).toBe("");
  });

  test("refuses another kind of file system and does not write to it (exit 2)", () => {
    const swap = volume("swap");
    const sum = sha256(swap.image);

    const r = dataVolume("attach", swap);

    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`refused: ${swap.device} holds a swap file system, not ext4`);
    expect(sha256(swap.image)).toBe(sum);
    expect(mountedAt("/data")).toBe("");
  });

  test("a device that does not appear within DEVICE_TIMEOUT is refused (exit 2)", () => {
    const r = dataVolume("attach", { image: "", device: "/dev/disk/by-id/scsi-0HC_Volume_404", name: "" }, { DEVICE_TIMEOUT: "2" });

    expect(r.status).toBe(2);
    expect(r.stderr).toContain("refused: /dev/disk/by-id/scsi-0HC_Volume_404 did not appear within 2s (DEVICE_TIMEOUT)");
  });

  test("an unreachable server is refused (exit 2)", () => {
    const r = dataVolume("attach", { image: "", device: "/dev/disk/by-id/scsi-0HC_Volume_1", name: "" }, { TARGET_PORT: String(closedPort()), CONNECT_TIMEOUT: "4" });

    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/error: attach: timed out: .* did not answer after 2 attempts/);
  });
});

// release on a NixOS host: the volume's device is mounted at /data and bound at the backend's state
// directory, all one device. Stopping /data's mount unit takes down first whatever Requires= it, as
// systemd does: the backend, the bind mount, blog-data-dirs.service.
describe("release", () => {
  /** A labelled volume in use: attached, mounted at /data, the backend running on it. */
  function inUse(): Volume {
    const v = volume("ext4:blog-data");
    const r = dataVolume("attach", v);
    if (r.status !== 0) throw new Error(`attach: ${r.stderr}`);
    expect(unitState(t(), "blog-backend.service")).toBe("active");
    return v;
  }

  test("stops /data's mount unit: the backend, then the bind mount, then /data go down; the device is mounted nowhere, cleanly (exit 0)", () => {
    const v = inUse();
    onTarget(t(), `echo written-before-release > ${STATE}/note`);
    expect(features(v.image)).toContain("needs_recovery"); // mounted

    const r = dataVolume("release", v);

    expect(r.stderr).toContain(`release: ${v.device} is out of use and unmounted, file systems synced: it can be detached`);
    expect(reportedStopped(r.stderr)).toEqual(expect.arrayContaining(["blog-backend.service", "blog-data-dirs.service", BIND_UNIT]));
    expect(r.status).toBe(0);
    expect(mountedAt("/data")).toBe("");
    expect(mountedAt(STATE)).toBe("");
    expect(unitState(t(), "blog-backend.service")).toBe("inactive");
    // The last mount of the file system went: its superblock says clean.
    expect(features(v.image)).not.toContain("needs_recovery");
    expect(run("debugfs", ["-R", "cat /var/lib/private/blog-backend/note", v.image]).stdout.trim()).toBe("written-before-release");
    expect(run("e2fsck", ["-n", v.image]).status).toBe(0);

    // Nothing mounted any more: nothing to do.
    const again = dataVolume("release", v);
    expect(again.stderr).toContain("release: /data is not mounted: nothing to stop");
    expect(again.status).toBe(0);
  });

  test("a process outside the units works in the bind mount: refused (exit 2), naming it; the units started again; released once it is gone", () => {
    const v = inUse();
    const holder = onTarget(t(), `cd ${STATE} && (sleep 100 >/dev/null 2>&1 </dev/null & echo $!)`);
    try {
      const busy = dataVolume("release", v);

      expect(busy.stderr).toContain(`still mounted at ${STATE} (processes using it: ${STATE}: ${holder} (sleep)`);
      expect(busy.stderr).toContain("Nothing was changed.");
      expect(busy.status).toBe(2);
      expect(mountedAt("/data")).toMatch(/^\/dev\/loop\d+ ext4$/);
      expect(onTarget(t(), `findmnt -n --mountpoint ${STATE} | wc -l`)).toBe("1");
      expect(unitState(t(), "blog-backend.service")).toBe("active");
    } finally {
      tryOnTarget(t(), `kill ${holder}`);
    }
    expect(waitFor(() => tryOnTarget(t(), `kill -0 ${holder}`).status !== 0, 10_000)).toBe(true);
    const r = dataVolume("release", v);
    expect(r.status).toBe(0);
    expect(mountedAt("/data")).toBe("");
    expect(mountedAt(STATE)).toBe("");
  });

  test("a mount of the volume made by hand, outside the units, stays after the stop: refused (exit 2), the stopped units and /data started again", () => {
    const v = inUse();
    onTarget(t(), "mkdir -p /run/by-hand && mount --bind /data /run/by-hand");
    try {
      const r = dataVolume("release", v);

      expect(r.stderr).toContain("still mounted at /run/by-hand (");
      expect(r.stderr).toContain("data.mount and the units the stop took down (");
      expect(r.stderr).toContain("were started again");
      expect(r.stderr).toContain("Nothing was changed.");
      expect(r.status).toBe(2);
      expect(mountedAt("/data")).toMatch(/^\/dev\/loop\d+ ext4$/);
      expect(mountedAt(STATE)).toMatch(/^\/dev\/loop\d+\[\/var\/lib\/private\/blog-backend\] ext4$/);
      expect(unitState(t(), "blog-backend.service")).toBe("active");
    } finally {
      tryOnTarget(t(), "umount /run/by-hand");
    }
    expect(dataVolume("release", v).status).toBe(0);
  });

  test("a server that does not answer within CONNECT_TIMEOUT: a loud warning, exit 0 (the volume can be detached)", () => {
    const r = dataVolume("release", { image: "", device: "/dev/disk/by-id/scsi-0HC_Volume_1", name: "" }, { TARGET_PORT: String(closedPort()), CONNECT_TIMEOUT: "4" });

    expect(r.status).toBe(0);
    expect(r.stderr).toContain("did not answer within CONNECT_TIMEOUT=4s");
    expect(r.stderr).toContain("the server may already be off or gone");
    expect(r.stderr).toContain("a Hetzner volume is attached to one server at a time, so the detach cannot leave two servers writing to it");
    expect(r.stderr).toContain("ext4 replays its journal the next time it is mounted");
    expect(r.stderr).not.toMatch(/^error:/m);
  });

  test("a server that answers with another host key, or refuses our key, is refused (exit 2), not taken as gone", () => {
    const v = inUse();
    const other = path.join(work, "other-key");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", other]);

    const wrongHost = dataVolume("release", v, { HOST_KEY: fs.readFileSync(`${other}.pub`, "utf8").trim() });
    const wrongKey = dataVolume("release", v, { SSH_PRIVATE_KEY: fs.readFileSync(other, "utf8") });

    expect(wrongHost.status).toBe(2);
    expect(wrongHost.stderr).toContain("presents a host key other than the pinned HOST_KEY");
    expect(wrongKey.status).toBe(2);
    expect(wrongKey.stderr).toContain("refused our key");
    expect(wrongKey.stderr).not.toContain("warning:");
    expect(mountedAt("/data")).toMatch(/^\/dev\/loop\d+ ext4$/);
    expect(dataVolume("release", v).status).toBe(0);
  });
});

describe("input", () => {
  const v = (): Volume => ({ image: "", device: "/dev/disk/by-id/scsi-0HC_Volume_1", name: "" });

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
    const env = scriptEnv(t(), { DATA_DEVICE: v().device, ...extra });

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
    const env = scriptEnv(t(), { DATA_DEVICE: v().device, DEVICE_TIMEOUT: "1" });

    const r = run("bash", ["-x", path.join(repoRoot, "scripts", "data-volume.sh"), "attach"], { env, timeoutMs: 60_000 });

    expect(r.stderr).toContain("+ ");
    for (const line of secretLines) expect(r.stdout + r.stderr).not.toContain(line);
  });
});

describe("the harness's disks (target.sh attach-disk, detach-disk)", () => {
  test("detach-disk takes a mounted disk away (its mount lazily), its node and links, and frees its loop device; this machine's /dev is untouched", () => {
    const v = volume("ext4:elsewhere");
    onTarget(t(), `mkdir -p /run/d && mount ${v.device} /run/d`);
    const loop = onTarget(t(), `readlink -f ${v.device}`);

    detachDisk(t(), v.name);
    attached = attached.filter((n) => n !== v.name);

    expect(mountedAt("/run/d")).toBe("");
    expect(onTarget(t(), `test -e ${v.device} || test -e /dev/disk/by-label/elsewhere || test -e ${loop} && echo present || echo gone`)).toBe("gone");
    expect(waitFor(() => run("losetup", ["-n", "-O", "NAME", "-j", v.image]).stdout.trim() === "", 10_000)).toBe(true);
    expect(fs.existsSync("/dev/disk")).toBe(devDiskBefore);
  });

  test("no other loop device of this machine is open to a target: only its own attached disks (the devices cgroup's allow-list)", () => {
    const other = startTarget();
    try {
      const v = volume("ext4:blog-data");
      const [major, minor] = onTarget(t(), `stat -L -c '%t %T' ${v.device}`).split(" ").map((x) => parseInt(x, 16));
      // The owner reads its disk; the other target may not even make a node for it.
      expect(tryOnTarget(t(), `head -c 1024 ${v.device} >/dev/null && echo read`).stdout.trim()).toBe("read");
      const elsewhere = tryOnTarget(other, `mknod /tmp/loop b ${major} ${minor}`);
      expect(elsewhere.status).not.toBe(0);
      expect(elsewhere.stderr).toContain("Operation not permitted");
      // Detached, it is closed to its former owner too.
      const device = onTarget(t(), `readlink -f ${v.device}`);
      detachDisk(t(), v.name);
      attached = attached.filter((n) => n !== v.name);
      expect(tryOnTarget(t(), `mknod /tmp/again b ${major} ${minor}`).stderr).toContain("Operation not permitted");
      expect(device).toMatch(/^\/dev\/loop\d+$/);
    } finally {
      stopTarget(other);
    }
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
    // The last user of the loop device (the container's mount) went with it.
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
