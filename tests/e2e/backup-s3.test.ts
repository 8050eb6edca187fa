// Backups to an S3 bucket with the real engine: versitygw (a real S3 gateway) in a network namespace
// of its own; the keys as config secrets, refused in plain text, delivered inside the host's
// environment secret, and asked of the bucket at every preview.
import * as crypto from "crypto";
import * as path from "path";
import { BackupServer, startS3, stopServer } from "./backup-servers";
import { E2eStack, OpResult, changes, ok } from "./harness";

jest.setTimeout(600_000);

const ACCESS_KEY = `E2E${crypto.randomBytes(6).toString("hex").toUpperCase()}`;
const SECRET_KEY = crypto.randomBytes(20).toString("hex");
const BUCKET = "blog-e2e-backups";
const s = new E2eStack("backups3");
let server: BackupServer;
const logs: string[] = [];

function record(r: OpResult): OpResult {
    logs.push(r.log);
    return r;
}

beforeAll(async () => {
    server = startS3(path.join(s.dir, "s3"), ACCESS_KEY, SECRET_KEY, BUCKET);
    await s.init(
        {
            "blog:dataVolumeSize": "10",
            "blog:backupTarget": "s3",
            "blog:backupS3Endpoint": `http://${server.addr}`,
            "blog:backupS3Bucket": BUCKET,
        },
        {},
        { host: { dataVolume: true } },
    );
}, 600_000);

afterAll(() => {
    if (server) stopServer(server);
    s.cleanup();
}, 120_000);

test("S3 keys set in plain text fail preview, naming each key and how to set it, never showing it", async () => {
    await s.setConfig({ "blog:backupS3AccessKeyId": ACCESS_KEY, "blog:backupS3SecretAccessKey": SECRET_KEY });
    const p = record(await s.preview());
    expect(p.error).toBeDefined();
    expect(p.log).toContain("blog:backupS3AccessKeyId: got \"[secret, 15 characters]\"; expected a secret: set it again with `pulumi config set --secret backupS3AccessKeyId <value>`");
    expect(p.log).toContain("blog:backupS3SecretAccessKey: got \"[secret, 40 characters]\"; expected a secret");
    expect(p.log).not.toContain(SECRET_KEY);
});

test("up with the keys as secrets: no sub-account, the repository in the bucket, the keys inside the host's environment secret", async () => {
    await s.setConfig({}, { "blog:backupS3AccessKeyId": ACCESS_KEY, "blog:backupS3SecretAccessKey": SECRET_KEY });
    const r = ok(record(await s.up()));
    expect(changes(r)).not.toContain("create blog-storagebox");
    const [dir] = s.targetDirs();
    expect(s.onTarget(dir, "cat /var/lib/blog-secrets/backupRepository")).toBe(`s3:http://${server.addr}/${BUCKET}/blog-backups/blog.e2e-site.test`);
    expect(s.onTarget(dir, "cat /var/lib/blog-secrets/backupEnvironment")).toBe(
        `AWS_ACCESS_KEY_ID=${ACCESS_KEY}\nAWS_SECRET_ACCESS_KEY=${SECRET_KEY}\nBLOG_BACKUP_S3_REGION=`,
    );
});

test("the preview asks the bucket: no backup yet; a missing bucket is named as the reason", async () => {
    const p = ok(record(await s.preview()));
    expect(p.log).toContain("backup: there is no backup yet");
    await s.setConfig({ "blog:backupS3Bucket": "no-such-bucket" });
    const missing = ok(record(await s.preview()));
    expect(missing.log).toContain("backup: how old the newest backup is could not be determined (the bucket does not exist (blog:backupS3Bucket; create it first))");
    await s.setConfig({ "blog:backupS3Bucket": BUCKET });
});

test("the S3 secret key is in no state file and no engine output in the clear", () => {
    expect(s.stateText()).not.toContain(SECRET_KEY);
    for (const log of logs) expect(log).not.toContain(SECRET_KEY);
});
