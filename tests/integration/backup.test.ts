// The host's backup, drill and restore on a real systemd (harness/target.sh: an nspawn container
// booting systemd as PID 1), with the units a test system renders from the same data and scripts
// as nix/modules/backup.nix (harness/backup-units.nix, given to closures.nix as `units`), the
// repository's credentials delivered by scripts/deploy.sh as host secrets, and a real backup
// target: the Storage Box stand-in's sshd on port 23 in a network namespace of its own
// (harness/backup-server.sh). restic is Debian's, in the target.
//
// It needs the real-systemd harness (harness/rootfs.sh, closures.nix with `units`, installSystem):
// until that harness is in this tree, the suite is skipped and says so.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as h from "./harness/target";
import { Target, attachDisk, onTarget, repoRoot, run, runScript, scriptEnv, startTarget, stopTarget, tryOnTarget, unitState } from "./harness/target";

const harnessDir = path.join(repoRoot, "tests/integration/harness");

/** A test system with the backup's units (closures.nix given backup-units.nix's units); its store path. */
function buildBackupClosure(): string {
  const expr =
    `let b = import ${harnessDir}/backup-units.nix { modules = ${repoRoot}/nix/modules; }; in ` +
    `import ${harnessDir}/closures.nix { name = "backup"; dataVolume = true; services = { blog-backend = [ ]; }; units = b.units; }`;
  const r = run("nix-build", ["--no-out-link", "--option", "substituters", "", "-E", expr], { timeoutMs: 120_000 });
  if (r.status !== 0) throw new Error(`nix-build of the backup system failed: ${r.stderr}`);
  return r.stdout.trim();
}

jest.setTimeout(300_000);

const serverScript = path.join(repoRoot, "tests/integration/harness/backup-server.sh");
const PASSWORD = "Box-login.password+0123456789";
const REPOSITORY_PASSWORD = "repository-password-0123456789abcdef";
let target: Target | undefined;
let work: string;
let box: { dir: string; addr: string; hostKey: string; root: string };
let system: string;

function t(): Target {
  if (!target) throw new Error("target not started");
  return target;
}

function server(args: string[], input?: string): string {
  return execFileSync("bash", [serverScript, ...args], { input, encoding: "utf8", timeout: 60_000 });
}

/** The host secrets the stack delivers for a Storage Box sub-account (src/backup.ts). */
function backupSecrets(password = PASSWORD, repositoryPassword = REPOSITORY_PASSWORD): Record<string, string> {
  const values: Record<string, string> = {
    backupRepository: `sftp://u1-sub1@${box.addr}:23/restic`,
    backupPassword: repositoryPassword,
    backupEnvironment:
      `BLOG_BACKUP_SFTP_USER=u1-sub1\nBLOG_BACKUP_SFTP_HOST=${box.addr}\nBLOG_BACKUP_SFTP_PORT=23\n` +
      `BLOG_BACKUP_SFTP_HOST_KEY=${box.hostKey}\nBLOG_BACKUP_SFTP_PASSWORD=${password}\n`,
  };
  const env: Record<string, string> = { HOST_SECRETS: Object.keys(values).join(" ") };
  for (const [name, value] of Object.entries(values)) env[`HOST_SECRET_${name}`] = value;
  return env;
}

function deploy(extra: Record<string, string>): void {
  const r = runScript("deploy.sh", scriptEnv(t(), { SYSTEM_CLOSURE: system, ...extra }), 240_000);
  if (r.status !== 0) throw new Error(`deploy.sh exited ${r.status}: ${r.stderr}`);
}

function status(file = "status.json"): Record<string, any> {
  return JSON.parse(onTarget(t(), `cat /var/lib/blog-backup/${file}`));
}

/** backup.sh against the target, as the operator runs it. */
function backupSh(...args: string[]) {
  return run(path.join(repoRoot, "scripts/backup.sh"), args, { env: scriptEnv(t()), timeoutMs: 240_000 });
}

describe("backups on a real systemd", () => {
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "blog-backup-int-"));
    server(["start", path.join(work, "box"), "sftp"]);
    const env = Object.fromEntries(
      fs.readFileSync(path.join(work, "box/server.env"), "utf8").split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    box = { dir: path.join(work, "box"), addr: env.BACKUP_ADDR, hostKey: env.HOST_KEY, root: env.BOX_ROOT };
    server(["add-user", box.dir, "u1-sub1", "blog-backups/site.test"], `${PASSWORD}\n`);
    target = startTarget({ ipv6: false });
    server(["connect", box.dir, t().netns]);
    system = buildBackupClosure();
    const installed = h.installSystem(t(), system);
    if (installed.status !== 0) throw new Error(`installing the system failed: ${installed.stderr}${installed.stdout}`);
    // blog-backup on root's PATH, as NixOS's system profile (sw/bin) puts it there.
    onTarget(t(), "ln -sf \"$(dirname \"$(sed -n 's/^ExecStart=\\(.*\\) drill$/\\1/p' /etc/systemd/system.attached/blog-backup-drill.service)\")/bin/blog-backup\" /usr/local/bin/blog-backup");
    // The data volume as Hetzner makes one, brought into use by data-volume.sh attach, as on a host.
    const image = path.join(work, "volume.img");
    fs.writeFileSync(image, "");
    fs.truncateSync(image, 64 * 1024 * 1024);
    execFileSync("mkfs.ext4", ["-q", "-F", image]);
    attachDisk(t(), image, "scsi-0HC_Volume_1");
    const attach = run(path.join(repoRoot, "scripts/data-volume.sh"), ["attach"], {
      env: scriptEnv(t(), { DATA_DEVICE: "/dev/disk/by-id/scsi-0HC_Volume_1", CONNECT_ATTEMPTS: "2", CONNECT_TIMEOUT: "10", DEVICE_TIMEOUT: "3" }),
      timeoutMs: 60_000,
    });
    if (attach.status !== 0) throw new Error(`data-volume.sh attach exited ${attach.status}: ${attach.stderr}`);
    // The stack's deploy delivers the repository's credentials (a secrets-only change is a deploy).
    deploy(backupSecrets());
    onTarget(t(), "printf 'a post\\n' > /data/var/lib/private/blog-backend/post.md");
  }, 300_000);

  afterAll(() => {
    stopTarget(target);
    if (box) server(["stop", box.dir]);
    fs.rmSync(work, { recursive: true, force: true });
  });

  test("the nightly timer: 01:00 plus up to 3 h, Persistent (a night the host was off is caught up at boot)", () => {
    const timer = onTarget(t(), "systemctl show -p TimersCalendar -p RandomizedDelayUSec -p Persistent restic-backups-blog.timer");
    expect(timer).toContain("OnCalendar=*-*-* 01:00:00");
    expect(timer).toContain("RandomizedDelayUSec=3h");
    expect(timer).toContain("Persistent=yes");
    expect(unitState(t(), "restic-backups-blog.timer")).toBe("active");
    expect(unitState(t(), "blog-backup-drill.timer")).toBe("active");
  });

  test("a backup: the repository is created, the writers stop for the copy and start again, the status file names the snapshot, prune follows", () => {
    onTarget(t(), "systemctl start restic-backups-blog.service");
    const s = status();
    expect(s).toMatchObject({ unit: "restic-backups-blog", result: "success" });
    expect(s.lastSnapshot).toMatch(/^[0-9a-f]{64}$/);
    const journal = onTarget(t(), "journalctl -u restic-backups-blog -o cat --no-pager");
    expect(journal).toContain("repository: none there yet; creating it");
    expect(journal).toMatch(/stopped for the copy: .*blog-backend\.service/);
    expect(journal).toMatch(/started again: .*blog-backend\.service/);
    expect(unitState(t(), "blog-backend.service")).toBe("active");
    expect(fs.existsSync(path.join(box.root, "blog-backups/site.test/restic/config"))).toBe(true);
    onTarget(t(), "timeout 60 sh -c 'while [ \"$(systemctl show -p ActiveState --value restic-backups-blog-prune)\" != inactive ] || [ -z \"$(journalctl -u restic-backups-blog-prune -o cat | grep Finished)\" ]; do sleep 0.5; done'");
    expect(onTarget(t(), "journalctl -u restic-backups-blog-prune -o cat --no-pager")).toContain("keep 1 snapshots");
  });

  test("a copy that fails leaves the unit failed and the writers running; the status keeps the last good backup", () => {
    const good = status();
    onTarget(
      t(),
      "mkdir -p /run/systemd/system/restic-backups-blog.service.d && printf '[Service]\\nExecStart=\\nExecStart=/bin/sh -c \"systemctl is-active blog-backend >/run/writer-during-copy; exit 3\"\\n' > /run/systemd/system/restic-backups-blog.service.d/fail.conf && systemctl daemon-reload",
    );
    try {
      expect(tryOnTarget(t(), "systemctl start restic-backups-blog.service").status).not.toBe(0);
      expect(onTarget(t(), "cat /run/writer-during-copy || true")).toBe("inactive");
      expect(unitState(t(), "restic-backups-blog.service")).toBe("failed");
      expect(unitState(t(), "blog-backend.service")).toBe("active");
      expect(status()).toMatchObject({ result: "failed", lastSuccess: good.lastSuccess, lastSnapshot: good.lastSnapshot });
    } finally {
      onTarget(t(), "rm -rf /run/systemd/system/restic-backups-blog.service.d && systemctl daemon-reload && systemctl reset-failed restic-backups-blog.service");
    }
  });

  test("a wrong repository password stops nothing and never starts a second repository", () => {
    deploy(backupSecrets(PASSWORD, "another-password-0123456789"));
    try {
      expect(tryOnTarget(t(), "systemctl start restic-backups-blog.service").status).not.toBe(0);
      const journal = onTarget(t(), "journalctl -u restic-backups-blog -o cat --no-pager -n 20");
      expect(journal).toContain("the repository cannot be opened");
      expect(journal).not.toContain("creating it");
      expect(fs.readdirSync(path.join(box.root, "blog-backups/site.test/restic/keys"))).toHaveLength(1);
    } finally {
      deploy(backupSecrets());
      onTarget(t(), "systemctl reset-failed restic-backups-blog.service");
    }
  });

  test("the drill restores the newest snapshot into a scratch directory, compares it with the live data and passes", () => {
    const r = backupSh("drill");
    expect(r.status).toBe(0);
    expect(status("drill.json")).toMatchObject({ unit: "blog-backup-drill", result: "success" });
    expect(status("drill.json").detail).toMatch(/1 files restored; 0 changed or gone since it was taken; 0 mismatches/);
    expect(onTarget(t(), "ls -A /data")).not.toMatch(/\.drill-/);
  });

  test("a drill finds a live file that differs from the snapshot under the same modification time", () => {
    onTarget(t(), "f=/data/var/lib/private/blog-backend/post.md; m=$(stat -c %y $f); printf 'b post\\n' > $f; touch -d \"$m\" $f");
    try {
      expect(backupSh("drill").status).toBe(4);
      expect(status("drill.json")).toMatchObject({ result: "failed" });
      expect(onTarget(t(), "journalctl -u blog-backup-drill -o cat --no-pager -n 20")).toContain("mismatch: /data/var/lib/private/blog-backend/post.md");
    } finally {
      onTarget(t(), "printf 'a post\\n' > /data/var/lib/private/blog-backend/post.md");
    }
  });

  test("a drill of a corrupted repository fails, even where the host's cache still holds the good metadata", () => {
    onTarget(t(), "systemctl start restic-backups-blog.service");
    // The packs the host's restic cache holds too (the trees): the drill must read them from the repository.
    const cached = onTarget(t(), "find /var/cache/restic-backups-blog -path '*/data/*' -type f -printf '%f\\n'").split("\n").filter(Boolean);
    expect(cached.length).toBeGreaterThan(0);
    const packs = execFileSync("find", [path.join(box.root, "blog-backups/site.test/restic/data"), "-type", "f"], { encoding: "utf8" })
      .trim()
      .split("\n")
      .filter((p) => cached.includes(path.basename(p)));
    expect(packs.length).toBe(cached.length);
    for (const p of packs) fs.copyFileSync(p, `${p}.good`);
    try {
      for (const p of packs) {
        const fd = fs.openSync(p, "r+");
        fs.writeSync(fd, Buffer.from("corrupted"), 0, 9, 16);
        fs.closeSync(fd);
      }
      expect(backupSh("drill").status).toBe(4);
      expect(status("drill.json").detail).toContain("the repository did not give back its data");
    } finally {
      for (const p of packs) fs.renameSync(`${p}.good`, p);
    }
  });

  test("restore brings the newest snapshot back in place: the current content moved aside, never deleted, the writers running again", () => {
    onTarget(t(), "printf 'changed after the backup\\n' > /data/var/lib/private/blog-backend/post.md");
    const r = backupSh("restore");
    expect(r.status).toBe(0);
    expect(onTarget(t(), "cat /data/var/lib/private/blog-backend/post.md")).toBe("a post");
    expect(onTarget(t(), "cat /data/.before-restore-*/var/lib/private/blog-backend/post.md")).toBe("changed after the backup");
    expect(unitState(t(), "blog-backend.service")).toBe("active");
    expect(backupSh("restore", "0123abcd").status).toBe(2);
  });

  test("without the stack's secrets the units are skipped, not failed", () => {
    deploy({ HOST_SECRETS: "" });
    onTarget(t(), "systemctl start restic-backups-blog.service blog-backup-drill.service");
    expect(onTarget(t(), "systemctl show -p ConditionResult --value restic-backups-blog.service")).toBe("no");
    expect(unitState(t(), "restic-backups-blog.service")).toBe("inactive");
    expect(backupSh("run").status).toBe(2);
  });
});
