// Backups off the host with the real engine: a Storage Box sub-account made for the host (a real
// SFTP server on port 23 in a network namespace of its own), the repository's credentials
// delivered as host secrets, the repository asked at every preview, and no credential in the
// state or the engine's output.
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { BackupServer, connect, startStorageBox, stopServer } from "./backup-servers";
import { E2eStack, OpResult, changes, ok } from "./harness";

jest.setTimeout(600_000);

/** The host side (the backup's units on a real systemd) needs the real-systemd harness. */

const BOX_ID = "4711";
const s = new E2eStack("backup");
/** The stack a total loss leaves you to make anew, on the same box and repository. */
const fresh = new E2eStack("restored");
let box: BackupServer;
const logs: string[] = [];

function record(r: OpResult): OpResult {
    logs.push(r.log);
    return r;
}

/** The environment file the deploy delivered to the host (its lines, parsed). */
function hostEnvironment(dir: string, stack: E2eStack = s): Record<string, string> {
    const text = stack.onTarget(dir, "cat /var/lib/blog-secrets/backupEnvironment");
    return Object.fromEntries(text.split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
}

/** restic as the host runs it, from this machine (the box is reachable from here too): its repository and credentials. */
function resticAsHost(dir: string, args: string[]): string {
    const env = {
        ...process.env,
        ...hostEnvironment(dir),
        RESTIC_REPOSITORY: s.onTarget(dir, "cat /var/lib/blog-secrets/backupRepository"),
        RESTIC_PASSWORD: s.onTarget(dir, "cat /var/lib/blog-secrets/backupPassword"),
        BLOG_BACKUP_KNOWN_HOSTS_DIR: s.dir,
        RESTIC_CACHE_DIR: path.join(s.dir, "restic-cache"),
    };
    const sftp = path.resolve(__dirname, "../../nix/modules/units/backup-sftp.sh");
    return execFileSync("restic", ["-o", `sftp.command=${sftp}`, ...args], { env, encoding: "utf8", timeout: 120_000 });
}

beforeAll(async () => {
    box = startStorageBox(path.join(s.dir, "storagebox"));
    await s.init(
        {
            "blog:dataVolumeSize": "10",
            "blog:backupTarget": "storagebox",
            "blog:backupStorageBoxId": BOX_ID,
            "blog:backupStorageBoxHostKey": box.hostKey!,
        },
        {},
        {
            host: { dataVolume: true },
            backup: true,
            env: { BLOG_E2E_STORAGE_BOXES: JSON.stringify({ [BOX_ID]: { name: "backups", location: "fsn1", dir: box.dir } }) },
        },
    );
}, 600_000);

afterAll(() => {
    // The box first: its directory is inside the stack's, which cleanup() removes.
    if (box) stopServer(box);
    fresh.cleanup();
    s.cleanup();
}, 180_000);

test("a Storage Box that is not in the project fails preview with the key and Hetzner's answer; nothing is created", async () => {
    await s.setConfig({ "blog:backupStorageBoxId": "999" });
    const p = record(await s.preview());
    expect(p.error).toBeDefined();
    expect(p.log).toContain('blog:backupStorageBoxId: got "999"; expected the id of a Storage Box in the project of hcloud:token');
    expect(p.log).toContain("storage box) was not found: id=999");
    await s.setConfig({ "blog:backupStorageBoxId": BOX_ID });
});

test("preview of a new stack: the repository's password, the box's login password and a sub-account are created", async () => {
    const p = ok(record(await s.preview()));
    expect(changes(p)).toEqual(
        expect.arrayContaining(["create blog-repository-password", "create blog-storagebox-password", "create blog-storagebox"]),
    );
});

test("up: a sub-account of its own on the box, SSH only, and the host holds the repository, its password and the login as root-only secrets", async () => {
    ok(record(await s.up()));
    const boxes = s.cloud("hcloud").storage_boxes;
    const subs = Object.values(boxes[BOX_ID].subaccounts) as Array<Record<string, any>>;
    expect(subs).toHaveLength(1);
    expect(subs[0]).toMatchObject({
        username: `u${BOX_ID}-sub1`,
        home_directory: "blog-backups/blog.e2e-site.test",
        access_settings: { ssh_enabled: true, samba_enabled: false, webdav_enabled: false, reachable_externally: true },
    });
    const [dir] = s.targetDirs();
    expect(s.onTarget(dir, "stat -L -c '%a %U' /var/lib/blog-secrets/backupRepository /var/lib/blog-secrets/backupPassword /var/lib/blog-secrets/backupEnvironment")).toBe(
        "400 root\n400 root\n400 root",
    );
    expect(s.onTarget(dir, "cat /var/lib/blog-secrets/backupRepository")).toBe(`sftp://u${BOX_ID}-sub1@${box.addr}:23/restic`);
    expect(hostEnvironment(dir)).toMatchObject({ BLOG_BACKUP_SFTP_USER: `u${BOX_ID}-sub1`, BLOG_BACKUP_SFTP_PORT: "23", BLOG_BACKUP_SFTP_HOST_KEY: box.hostKey });
    const outputs = await s.outputs();
    expect(outputs.backup).toEqual({ target: "storagebox", repository: `sftp://u${BOX_ID}-sub1@${box.addr}:23/restic` });
    expect(outputs.backupPassword).toBe(s.onTarget(dir, "cat /var/lib/blog-secrets/backupPassword"));
});

test("the next preview asks the repository: there is no backup yet", async () => {
    const p = ok(record(await s.preview()));
    expect(changes(p)).toEqual([]);
    expect(p.log).toContain("backup: there is no backup yet (the repository holds no snapshot)");
});

test("with a snapshot in the repository, every preview says how old the newest is", async () => {
    const [dir] = s.targetDirs();
    // What the host's job does, from here, with the host's own credentials.
    resticAsHost(dir, ["init"]);
    const data = path.join(s.dir, "data");
    fs.mkdirSync(data);
    fs.writeFileSync(path.join(data, "post.md"), "hello\n");
    resticAsHost(dir, ["backup", "--tag", "blog", data]);
    const id = JSON.parse(resticAsHost(dir, ["snapshots", "--json"]))[0].id as string;
    const p = ok(record(await s.preview()));
    expect(p.log).toMatch(new RegExp(`backup: the newest backup is \\d+ min old \\(snapshot ${id.slice(0, 8)}, `));
});

test("the repository's password and the box's login password are in no state file and no engine output in the clear", async () => {
    const [dir] = s.targetDirs();
    const secrets = [s.onTarget(dir, "cat /var/lib/blog-secrets/backupPassword"), hostEnvironment(dir).BLOG_BACKUP_SFTP_PASSWORD];
    expect(secrets.every((v) => v.length >= 40)).toBe(true);
    const state = s.stateText();
    for (const secret of secrets) {
        expect(state).not.toContain(secret);
        for (const log of logs) expect(log).not.toContain(secret);
    }
    // The state holds them, encrypted: the export with secrets shows them.
    const exported = JSON.stringify(s.exportWithSecrets());
    for (const secret of secrets) expect(exported).toContain(secret);
});

/** A scenario of the host's own job: it needs the real-systemd harness. */

// ---- On the host's real systemd: the nightly job, a failure, the drill, a total loss, a NEW stack ----

const serverScript = path.resolve(__dirname, "../integration/harness/backup-server.sh");
/** The files written into the services' state on /data, by name, and their sha256. */
const written: Record<string, string> = {};
const STATE = "/data/var/lib/private/blog-backend";
/** The snapshot of the host's last good backup. */
let lastGood = "";

/** backup.sh against a stack's host, from its outputs, as an operator runs it. */
async function backupSh(stack: E2eStack, ...args: string[]) {
    const out = await stack.outputs();
    return spawnSync("bash", [path.resolve(__dirname, "../../scripts/backup.sh"), ...args], {
        env: { ...process.env, TARGET_HOST: String(out.ipv4), HOST_KEY: String(out.hostKey), SSH_PRIVATE_KEY: stack.admin.privateKey },
        encoding: "utf8",
        timeout: 300_000,
    });
}

/**
 * Routes a stack's server to the box (the test network has no default route), and puts
 * blog-backup on root's PATH, as NixOS's system profile (sw/bin) does; returns its directory.
 */
function connectServers(stack: E2eStack): string {
    const [dir] = stack.targetDirs();
    connect(box, stack.targetEnv(dir).NETNS);
    stack.onTarget(
        dir,
        `ln -sf "$(dirname "$(sed -n 's/^ExecStart=\\(.*\\) drill$/\\1/p' /etc/systemd/system.attached/blog-backup-drill.service)")/bin/blog-backup" /usr/local/bin/blog-backup`,
    );
    return dir;
}

function sha256Of(stack: E2eStack, dir: string, file: string): string {
    return stack.onTarget(dir, `sha256sum ${file} | cut -d' ' -f1`);
}

test("the host's nightly job backs up the volume: the services stop for the copy only; the status file names the snapshot; the preview sees it", async () => {
    const dir = connectServers(s);
    s.onTarget(dir, `mkdir -p ${STATE} && head -c 300000 /dev/urandom > ${STATE}/photo.bin && printf 'a post\\n' > ${STATE}/post.md && head -c 64 /dev/urandom > ${STATE}/actor.key`);
    for (const name of ["photo.bin", "post.md", "actor.key"]) written[name] = sha256Of(s, dir, `${STATE}/${name}`);
    const r = await backupSh(s, "run");
    expect([r.status, r.stderr.slice(-1500)]).toEqual([0, expect.any(String)]);
    const status = JSON.parse(s.onTarget(dir, "cat /var/lib/blog-backup/status.json"));
    expect(status).toMatchObject({ unit: "restic-backups-blog", result: "success" });
    lastGood = status.lastSnapshot;
    expect(s.onTarget(dir, "journalctl -u restic-backups-blog -o cat --no-pager")).toMatch(/stopped for the copy: .*blog-backend\.service[\s\S]*started again: /);
    const p = ok(record(await s.preview()));
    expect(p.log).toMatch(new RegExp(`backup: the newest backup is \\d+ min old \\(snapshot ${status.lastSnapshot.slice(0, 8)}, `));
});

test("a failed backup: the unit fails, the status keeps the last good one, and the next preview still says when that was", async () => {
    const [dir] = s.targetDirs();
    const good = JSON.parse(s.onTarget(dir, "cat /var/lib/blog-backup/status.json"));
    const password = hostEnvironment(dir).BLOG_BACKUP_SFTP_PASSWORD;
    // The box refuses the sub-account's login (as after a password reset in the console).
    execFileSync("bash", [serverScript, "del-user", box.dir, `u${BOX_ID}-sub1`]);
    try {
        const r = await backupSh(s, "run");
        expect(r.status).toBe(4);
        expect(s.onTarget(dir, "systemctl is-failed restic-backups-blog.service || true")).toBe("failed");
        expect(JSON.parse(s.onTarget(dir, "cat /var/lib/blog-backup/status.json"))).toMatchObject({ result: "failed", lastSnapshot: good.lastSnapshot });
    } finally {
        execFileSync("bash", [serverScript, "add-user", box.dir, `u${BOX_ID}-sub1`, "blog-backups/blog.e2e-site.test"], { input: `${password}\n` });
    }
    const p = ok(record(await s.preview()));
    expect(p.log).toContain(`(snapshot ${good.lastSnapshot.slice(0, 8)}, `);
    // A no-change up runs nothing, and says the same.
    const u = ok(record(await s.up()));
    expect(changes(u)).toEqual([]);
    expect(u.log).toContain(`(snapshot ${good.lastSnapshot.slice(0, 8)}, `);
});

test("a drill restores the newest snapshot into a scratch directory, compares it with the live data and passes", async () => {
    const r = await backupSh(s, "drill");
    expect([r.status, r.stderr.slice(-1500)]).toEqual([0, expect.any(String)]);
    const [dir] = s.targetDirs();
    expect(JSON.parse(s.onTarget(dir, "cat /var/lib/blog-backup/drill.json"))).toMatchObject({ result: "success" });
});

test("destroy everything, the volume too; a NEW stack adopts the repository with the old password and restores the data byte-identical", async () => {
    const password = String((await s.outputs()).backupPassword);
    await s.setConfig({ "blog:dataVolumeDeleteOnDestroy": "true" });
    ok(record(await s.up()));
    ok(record(await s.destroy()));
    expect(Object.keys(s.cloud("hcloud").volumes ?? {})).toEqual([]);
    expect(s.cloud("hcloud").storage_boxes[BOX_ID].subaccounts).toEqual({});
    // The repository stays on the box; the login is gone.
    expect(fs.existsSync(path.join(box.boxRoot!, "blog-backups/blog.e2e-site.test/restic/config"))).toBe(true);

    await fresh.init(
        {
            "blog:dataVolumeSize": "10",
            "blog:backupTarget": "storagebox",
            "blog:backupStorageBoxId": BOX_ID,
            "blog:backupStorageBoxHostKey": box.hostKey!,
        },
        { "blog:backupPassword": password },
        { host: { dataVolume: true }, backup: true, env: { BLOG_E2E_STORAGE_BOXES: JSON.stringify({ [BOX_ID]: { name: "backups", location: "fsn1", dir: box.dir } }) } },
    );
    const lastSnapshot = lastGood.slice(0, 8);
    ok(record(await fresh.up()));
    // The new sub-account exists now: the next preview reads the old repository with the old password.
    const p = ok(record(await fresh.preview()));
    expect(p.log).toMatch(new RegExp(`backup: the newest backup is \\d+ min old \\(snapshot ${lastSnapshot}`));
    const dir = connectServers(fresh);
    const r = await backupSh(fresh, "restore");
    expect([r.status, r.stderr.slice(-1500)]).toEqual([0, expect.any(String)]);
    for (const [name, sha] of Object.entries(written)) expect([name, sha256Of(fresh, dir, `${STATE}/${name}`)]).toEqual([name, sha]);
});

test("a drill of a corrupted repository fails, and the unit says so", async () => {
    const packs = execFileSync("find", [path.join(box.boxRoot!, "blog-backups/blog.e2e-site.test/restic/data"), "-type", "f"], { encoding: "utf8" })
        .trim()
        .split("\n");
    for (const p of packs) {
        const fd = fs.openSync(p, "r+");
        fs.writeSync(fd, Buffer.from("corrupted"), 0, 9, 16);
        fs.closeSync(fd);
    }
    const r = await backupSh(fresh, "drill");
    expect(r.status).toBe(4);
    const [dir] = fresh.targetDirs();
    expect(JSON.parse(fresh.onTarget(dir, "cat /var/lib/blog-backup/drill.json"))).toMatchObject({ result: "failed" });
    expect(fresh.onTarget(dir, "systemctl is-failed blog-backup-drill.service || true")).toBe("failed");
});

test("neither password is in either stack's state, the engine's output or the host's journal", () => {
    const [dir] = fresh.targetDirs();
    const secrets = [fresh.onTarget(dir, "cat /var/lib/blog-secrets/backupPassword"), hostEnvironment(dir, fresh).BLOG_BACKUP_SFTP_PASSWORD];
    const journal = fresh.onTarget(dir, "journalctl -o cat --no-pager");
    for (const secret of secrets) {
        expect(fresh.stateText()).not.toContain(secret);
        expect(journal).not.toContain(secret);
        for (const log of logs) expect(log).not.toContain(secret);
    }
});
