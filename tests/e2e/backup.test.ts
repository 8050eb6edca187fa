// Backups off the host with the real engine: a Storage Box sub-account made for the host (a real
// SFTP server on port 23 in a network namespace of its own), the repository's credentials
// delivered as host secrets, the repository asked at every preview, and no credential in the
// state or the engine's output.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { BackupServer, startStorageBox, stopServer } from "./backup-servers";
import { E2eStack, OpResult, changes, ok } from "./harness";

jest.setTimeout(600_000);

const BOX_ID = "4711";
const s = new E2eStack("backup");
let box: BackupServer;
const logs: string[] = [];

function record(r: OpResult): OpResult {
    logs.push(r.log);
    return r;
}

/** The environment file the deploy delivered to the host (its lines, parsed). */
function hostEnvironment(dir: string): Record<string, string> {
    const text = s.onTarget(dir, "cat /var/lib/blog-secrets/backupEnvironment");
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
            "blog:volumeSize": "10",
            "blog:backupTarget": "storagebox",
            "blog:backupStorageBoxId": BOX_ID,
            "blog:backupStorageBoxHostKey": box.hostKey!,
        },
        {},
        {
            host: { dataVolume: true },
            env: { BLOG_E2E_STORAGE_BOXES: JSON.stringify({ [BOX_ID]: { name: "backups", location: "fsn1", dir: box.dir } }) },
        },
    );
}, 600_000);

afterAll(() => {
    if (box) stopServer(box);
    s.cleanup();
}, 120_000);

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
