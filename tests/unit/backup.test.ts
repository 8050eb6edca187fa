import * as pulumi from "@pulumi/pulumi";
import { BACKUP_STATUS_COMMAND, age, parseStatus, statusMessages, storageBoxProblems } from "../../src/backup";
import { readStackConfig } from "../../src/config";
import { dataProblems } from "../../src/preflight";
import { RANDOM_PASSWORD, SERVER_TYPES, ZONE_ID, evaluation, runProgram, valueOf } from "./program";

const BOX_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmDpB1X1dWQ2y8BW9jL5SRiNFm4nHpq4Cn3ZTpTLzDd";
const STORAGE_BOX = { "blog:backupTarget": "storagebox", "blog:backupStorageBoxId": "4711", "blog:backupStorageBoxHostKey": BOX_KEY };
const BOXES = { 4711: { username: "u1234", server: "u1234.your-storagebox.de", location: "fsn1" } };
const S3 = {
    "blog:backupTarget": "s3",
    "blog:backupS3Endpoint": "https://fsn1.your-objectstorage.com",
    "blog:backupS3Bucket": "blog-backups",
    "blog:backupS3Region": "fsn1",
    "blog:backupS3AccessKeyId": "AKIAEXAMPLEKEY01",
    "blog:backupS3SecretAccessKey": "s3-secret-key-value-0123456789",
};
const S3_SECRETS = ["blog:backupS3AccessKeyId", "blog:backupS3SecretAccessKey"];
const DATA_HOST = { ...evaluation(), host: { ...evaluation().host, dataVolume: true } };
const SNAPSHOT = "a".repeat(64);

function problem(config: Record<string, string>, secretKeys: string[] = []): string {
    pulumi.runtime.setAllConfig({ "blog:cloudflareZoneId": ZONE_ID, ...config }, secretKeys);
    try {
        readStackConfig(new pulumi.Config("blog"));
    } catch (err) {
        return (err as Error).message;
    }
    throw new Error(`config ${JSON.stringify(config)} was accepted; expected an error`);
}

/** The deploy's environment: where the host secrets travel. */
async function deployEnvironment(run: Awaited<ReturnType<typeof runProgram>>) {
    const deploy = run.all("command:local:Command").find((r) => r.name === "blog-switch")!;
    return deploy;
}

// A program's last outputs settle after runProgram returns; the next run's mocks must not see them.
afterEach(() => new Promise((resolve) => setTimeout(resolve, 500)));

describe("backup config", () => {
    test("none is the default: no repository, no secret, null outputs", async () => {
        const run = await runProgram();
        expect(run.all("random:index/randomPassword:RandomPassword")).toEqual([]);
        expect(run.all("blog:backup:Repository")).toEqual([]);
        expect(await valueOf(run.outputs.backup as any)).toBeNull();
        expect((await deployEnvironment(run)).inputs.environment.HOST_SECRETS).toBe("");
    });

    test.each([
        [{ "blog:backupTarget": "restic" }, [], 'blog:backupTarget: got "restic"; expected none, storagebox (a Hetzner Storage Box you have) or s3'],
        [{ "blog:backupTarget": "storagebox" }, [], "blog:backupStorageBoxId: got nothing; expected a Hetzner Storage Box id"],
        [{ "blog:backupTarget": "storagebox", "blog:backupStorageBoxId": "4711" }, [], "blog:backupStorageBoxHostKey: got nothing; expected the Storage Box's SSH host key line on port 23"],
        [{ ...STORAGE_BOX, "blog:backupStorageBoxId": "box-1" }, [], 'blog:backupStorageBoxId: got "box-1"; expected a Hetzner Storage Box id: digits only'],
        [{ ...STORAGE_BOX, "blog:backupStorageBoxHostKey": "ssh-ed25519 nope" }, [], "blog:backupStorageBoxHostKey: got \"ssh-ed25519 nope\""],
        [{ ...STORAGE_BOX, "blog:backupS3Bucket": "b1" }, [], 'blog:backupS3Bucket: got "b1"; expected nothing while blog:backupTarget is storagebox'],
        [{ ...S3, "blog:backupS3Endpoint": "fsn1.your-objectstorage.com" }, S3_SECRETS, "blog:backupS3Endpoint: got \"fsn1.your-objectstorage.com\"; expected the S3 endpoint as a URL without a path"],
        [{ ...S3, "blog:backupS3Bucket": "Blog_Backups" }, S3_SECRETS, 'blog:backupS3Bucket: got "Blog_Backups"; expected an S3 bucket name'],
        [{ ...S3, "blog:backupS3Region": "Frankfurt am Main" }, S3_SECRETS, 'blog:backupS3Region: got "Frankfurt am Main"; expected a region name'],
        [{ "blog:backupTarget": "none", "blog:backupS3Bucket": "blog-backups" }, [], 'blog:backupS3Bucket: got "blog-backups"; expected nothing while blog:backupTarget is none'],
    ])("refuses %j at preview, naming the key, the value and what is expected", (config, secretKeys, message) => {
        expect(problem(config, secretKeys)).toContain(message);
    });

    test("the S3 keys must be set with --secret, and are never shown", () => {
        const text = problem(S3, []);
        expect(text).toContain('blog:backupS3AccessKeyId: got "[secret, 16 characters]"; expected a secret: set it again with `pulumi config set --secret backupS3AccessKeyId <value>`');
        expect(text).toContain("blog:backupS3SecretAccessKey: got \"[secret, 30 characters]\"; expected a secret");
        expect(text).not.toContain("s3-secret-key-value");
        expect(text).not.toContain("AKIAEXAMPLEKEY01");
        expect(problem({ ...S3, "blog:backupS3SecretAccessKey": "" }, S3_SECRETS)).toContain("blog:backupS3SecretAccessKey: got nothing; expected an S3 secret access key");
    });

    test("backupPassword adopts a repository only as a secret, and only with a target", () => {
        expect(problem({ ...STORAGE_BOX, "blog:backupPassword": "the-old-password" })).toContain(
            'blog:backupPassword: got "[secret, 16 characters]"; expected a secret',
        );
        expect(problem({ "blog:backupPassword": "the-old-password" }, ["blog:backupPassword"])).toContain(
            "blog:backupPassword: got \"[secret]\"; expected nothing while blog:backupTarget is none",
        );
    });

    test("a configuration that would back up nothing is refused, saying why", async () => {
        await expect(runProgram({ config: STORAGE_BOX, storageBoxes: BOXES, evaluation: { ...evaluation(), backupPaths: [] } })).rejects.toThrow(
            'blog:backupTarget: got "storagebox"; expected none, as ./nix#nixosConfigurations."blog".config.blog.backup.paths is empty',
        );
    });

    test("a Storage Box that is not in the project is refused, with Hetzner's answer", () => {
        expect(storageBoxProblems(4711, { id: 4711, username: "u1234" })).toEqual([]);
        expect(storageBoxProblems(4711, undefined, "storage box not found: id 4711").map(String)).toEqual([
            'blog:backupStorageBoxId: got "4711"; expected the id of a Storage Box in the project of hcloud:token (`hcloud storage-box list`): Hetzner answered storage box not found: id 4711',
        ]);
    });
});

describe("a Storage Box target", () => {
    let run: Awaited<ReturnType<typeof runProgram>>;
    beforeAll(async () => {
        run = await runProgram({ config: { ...STORAGE_BOX, "blog:dataVolumeSize": "10" }, storageBoxes: BOXES, evaluation: DATA_HOST });
    });

    test("a sub-account of its own: a home directory named by the domain, SSH only, a policy-conform generated password", async () => {
        const sub = run.one("hcloud:index/storageBoxSubaccount:StorageBoxSubaccount");
        expect(sub.inputs).toMatchObject({
            storageBoxId: 4711,
            homeDirectory: "blog-backups/blog.example-site.org",
            accessSettings: { sshEnabled: true, reachableExternally: true, sambaEnabled: false, webdavEnabled: false, readonly: false },
        });
        expect(sub.secretPaths).toContain("password");
        const passwords = run.all("random:index/randomPassword:RandomPassword");
        expect(passwords.map((p) => p.name).sort()).toEqual(["blog-repository-password", "blog-storagebox-password"]);
        expect(passwords.find((p) => p.name === "blog-storagebox-password")!.inputs).toMatchObject({
            length: 40,
            minUpper: 2,
            minLower: 2,
            minNumeric: 2,
            minSpecial: 2,
            overrideSpecial: "-_.+",
        });
        expect(passwords.find((p) => p.name === "blog-repository-password")!.inputs).toMatchObject({ length: 48, special: false });
    });

    test("the host gets the repository, its password and the login as host secrets of the deploy, each secret", async () => {
        const deploy = await deployEnvironment(run);
        const env = deploy.inputs.environment;
        expect(env.HOST_SECRETS).toBe("backupEnvironment backupPassword backupRepository");
        expect(env.HOST_SECRET_backupRepository).toBe("sftp://u1234-sub1@u1234-sub1.your-storagebox.de:23/restic");
        expect(env.HOST_SECRET_backupPassword).toBe(`${RANDOM_PASSWORD}-blog-repository-password`);
        expect(env.HOST_SECRET_backupEnvironment).toBe(
            "BLOG_BACKUP_SFTP_USER=u1234-sub1\n" +
                "BLOG_BACKUP_SFTP_HOST=u1234-sub1.your-storagebox.de\n" +
                "BLOG_BACKUP_SFTP_PORT=23\n" +
                `BLOG_BACKUP_SFTP_HOST_KEY=${BOX_KEY}\n` +
                `BLOG_BACKUP_SFTP_PASSWORD=${RANDOM_PASSWORD}-blog-storagebox-password\n`,
        );
        // The mock monitor marks the whole map secret; per-value secrecy is the e2e suite's to show.
        expect(deploy.secretPaths).toContain("environment");
        expect(await valueOf(run.outputs.backup as any)).toEqual({ target: "storagebox", repository: "sftp://u1234-sub1@u1234-sub1.your-storagebox.de:23/restic" });
        expect(await run.pulumi.isSecret(run.outputs.backupPassword as any)).toBe(true);
        expect(await valueOf(run.outputs.backupPassword as any)).toBe(`${RANDOM_PASSWORD}-blog-repository-password`);
    });

    test("the repository is asked at every run, its credentials in the environment, never on the command line", async () => {
        const status = run.invokes.find((i) => i.token === "command:local:run")!;
        expect(status.inputs.command).toBe(BACKUP_STATUS_COMMAND);
        expect(status.inputs.logging).toBe("none");
        expect(status.inputs.environment).toMatchObject({
            RESTIC_REPOSITORY: "sftp://u1234-sub1@u1234-sub1.your-storagebox.de:23/restic",
            BLOG_BACKUP_SFTP_HOST_KEY: BOX_KEY,
            BLOG_BACKUP_SFTP_PORT: "23",
        });
        expect(JSON.stringify(status.inputs.command)).not.toContain(RANDOM_PASSWORD);
    });

});

describe("an S3 target", () => {
    test("a repository per domain in the bucket; the keys reach the host only inside the environment secret", async () => {
        const run = await runProgram({ config: { ...S3, "blog:dataVolumeSize": "10" }, secretKeys: S3_SECRETS, evaluation: DATA_HOST });
        expect(run.all("hcloud:index/storageBoxSubaccount:StorageBoxSubaccount")).toEqual([]);
        const env = (await deployEnvironment(run)).inputs.environment;
        expect(env.HOST_SECRET_backupRepository).toBe("s3:https://fsn1.your-objectstorage.com/blog-backups/blog-backups/blog.example-site.org");
        expect(env.HOST_SECRET_backupEnvironment).toBe(
            "AWS_ACCESS_KEY_ID=AKIAEXAMPLEKEY01\nAWS_SECRET_ACCESS_KEY=s3-secret-key-value-0123456789\nBLOG_BACKUP_S3_REGION=fsn1\n",
        );
        expect(JSON.stringify(Object.entries(env).filter(([k]) => !k.startsWith("HOST_SECRET_")))).not.toContain("s3-secret-key-value");
    });

    test("backupPassword adopts an existing repository: no password is generated, and the host gets the one given", async () => {
        const run = await runProgram({
            config: { ...S3, "blog:dataVolumeSize": "10", "blog:backupPassword": "the-password-of-the-old-stack" },
            secretKeys: [...S3_SECRETS, "blog:backupPassword"],
            evaluation: DATA_HOST,
        });
        expect(run.all("random:index/randomPassword:RandomPassword")).toEqual([]);
        expect((await deployEnvironment(run)).inputs.environment.HOST_SECRET_backupPassword).toBe("the-password-of-the-old-stack");
    });
});

describe("what the plan is told about the backups", () => {
    const now = new Date("2026-12-07T12:00:00Z");

    test("reads only the status script's exact forms; anything else is unknown", () => {
        expect(parseStatus(`{"state":"snapshot","id":"${SNAPSHOT}","time":"2026-12-07T02:13:00Z","paths":["/data"]}`)).toEqual({
            state: "snapshot",
            id: SNAPSHOT,
            time: "2026-12-07T02:13:00.000Z",
            paths: ["/data"],
        });
        expect(parseStatus('{"state":"empty"}')).toEqual({ state: "empty" });
        const restic = parseStatus(`{"state":"snapshot","id":"${SNAPSHOT}","time":"2026-12-07T13:17:52.245620247+01:00","paths":[]}`);
        expect(restic.state === "snapshot" && restic.time).toBe("2026-12-07T12:17:52.245Z");
        expect(parseStatus('{"state":"unknown","reason":"restic is not installed here"}')).toEqual({ state: "unknown", reason: "restic is not installed here" });
        expect(parseStatus(`{"state":"snapshot","id":"$(reboot)","time":"2026-12-07T02:13:00Z"}`).state).toBe("unknown");
        expect(parseStatus("Fatal: wrong password").state).toBe("unknown");
    });

    test("a plan that replaces the server or deletes the volume says how old the newest backup is, or that there is none", () => {
        const risk = "This plan replaces the server (cx23 in nbg1).";
        const fresh = statusMessages({ state: "snapshot", id: SNAPSHOT, time: "2026-12-07T02:00:00.000Z", paths: ["/data"] }, [risk], now);
        expect(fresh.warnings).toEqual([`${risk} Before it goes ahead: the newest backup is 10 h 0 min old (snapshot aaaaaaaa, 2026-12-07T02:00:00.000Z).`]);
        expect(fresh.info[0]).toContain("of /data");
        const none = statusMessages({ state: "empty" }, ["This plan deletes the data volume blog-volume-1."], now);
        expect(none.warnings).toEqual(["This plan deletes the data volume blog-volume-1. Before it goes ahead: there is no backup yet (the repository holds no snapshot)."]);
        const unknown = statusMessages({ state: "unknown", reason: "restic is not installed here" }, [risk], now);
        expect(unknown.warnings[1]).toContain("could not be determined (restic is not installed here)");
    });

    test("a backup older than a night and a half says the nightly job has failed since", () => {
        const stale = statusMessages({ state: "snapshot", id: SNAPSHOT, time: "2026-12-05T02:00:00.000Z", paths: [] }, [], now);
        expect(stale.warnings).toEqual([expect.stringContaining("backup: the last good backup is 2 days 10 h old: the nightly backup has failed since")]);
        expect(age(new Date("2026-12-07T11:15:00Z"), now)).toBe("45 min");
    });

    test("preflight names what the plan does to the data: a replaced server, a volume let go of", () => {
        const replaced = dataProblems({
            volumeSize: 0,
            deleteOnDestroy: false,
            location: "fsn1",
            system: "x86_64-linux",
            server: { serverType: "cx23", location: "nbg1", primaryDiskSize: 40 },
            types: SERVER_TYPES,
        });
        expect(replaced.risks).toEqual(["This plan replaces the server (cx23 in nbg1)."]);
        const deleted = dataProblems({
            volumeSize: 0,
            deleteOnDestroy: true,
            current: { name: "blog-volume-1", id: 7, size: 10, location: "nbg1", serverId: 1 },
            location: "nbg1",
            system: "x86_64-linux",
            server: { serverType: "cx23", location: "nbg1", primaryDiskSize: 40 },
            types: SERVER_TYPES,
        });
        expect(deleted.risks).toEqual(["This plan deletes the data volume blog-volume-1."]);
    });
});

describe("the program and the repository's answer", () => {
    test("the repository's answer reaches the plan: a stale newest snapshot is a warning naming its age", async () => {
        const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
        try {
            const old = new Date(Date.now() - 3 * 24 * 3600_000).toISOString();
            await runProgram({
                config: { ...STORAGE_BOX, "blog:dataVolumeSize": "10" },
                storageBoxes: BOXES,
                evaluation: DATA_HOST,
                backupStatus: `{"state":"snapshot","id":"${SNAPSHOT}","time":"${old}","paths":["/data"]}`,
            });
            await new Promise((resolve) => setTimeout(resolve, 100));
            const warned = warn.mock.calls.map((c) => String(c[0]));
            expect(warned).toEqual(expect.arrayContaining([expect.stringContaining("backup: the last good backup is 3 days 0 h old")]));
        } finally {
            warn.mockRestore();
        }
    });
});
