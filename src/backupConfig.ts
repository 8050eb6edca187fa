import * as pulumi from "@pulumi/pulumi";
import { HOST_KEY_TYPES, publicKeyProblem } from "./keys";

/**
 * The `backup*` keys: where restic keeps the host's backups. One problem per bad key, phrased
 * as the other keys are (input, value, what was expected); secrets are shown by their shape only.
 */

/** A Storage Box sub-account the stack creates for this host, on a box you have. */
export interface StorageBoxTarget {
    kind: "storagebox";
    /** The Storage Box's id (`hcloud storage-box list`). */
    storageBoxId: number;
    /** The box's SSH host key line (port 23): every connection to it is checked against it. */
    hostKey: string;
}

/** Any S3-compatible bucket (Hetzner Object Storage, Backblaze B2, AWS, ...). */
export interface S3Target {
    kind: "s3";
    /** `https://<host>[:port]` (or `http://` for a server on a trusted network). */
    endpoint: string;
    bucket: string;
    /** The bucket's region when the endpoint needs one; undefined: restic asks the server. */
    region?: string;
    accessKeyId: pulumi.Output<string>;
    secretAccessKey: pulumi.Output<string>;
}

export interface BackupConfig {
    /** `none` (the default), or where the backups go. */
    target: StorageBoxTarget | S3Target | { kind: "none" };
    /** The password of an existing repository to adopt (a new stack reading an old stack's backups); undefined: generated. */
    password?: pulumi.Output<string>;
}

export const BACKUP_TARGETS = ["none", "storagebox", "s3"] as const;

/** What the config reader hands over: a raw value, the problem list, and whether a key was set as a secret. */
export interface KeyReader {
    raw(name: string): string | undefined;
    problem(name: string, value: unknown, expected: string): void;
    isSecret(name: string): boolean;
}

/** An S3 bucket name (AWS's rules, which Hetzner Object Storage and B2 share): 3-63 of a-z 0-9 . -, alphanumeric ends. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Storage Box ids and S3 key ids: plain ASCII, no whitespace. */
const ACCESS_KEY_ID = /^[A-Za-z0-9+/=._-]{8,128}$/;

function redacted(value: string): string {
    return `[secret, ${value.length} characters]`;
}

/** Reads the `backup*` keys; the caller's problem list collects every bad one. */
export function readBackupConfig(r: KeyReader): BackupConfig {
    const target = r.raw("backupTarget") ?? BACKUP_TARGETS[0];
    const password = readSecret(r, "backupPassword", (v) =>
        v.length >= 8 && !/[\n\0]/.test(v) ? undefined : "the repository password of an existing restic repository (at least 8 characters, one line)",
    );
    const result: BackupConfig = { target: { kind: "none" }, password };
    const given = (names: string[]) => names.filter((n) => r.raw(n) !== undefined);
    const storageBoxKeys = ["backupStorageBoxId", "backupStorageBoxHostKey"];
    const s3Keys = ["backupS3Endpoint", "backupS3Bucket", "backupS3Region", "backupS3AccessKeyId", "backupS3SecretAccessKey"];

    if (!(BACKUP_TARGETS as readonly string[]).includes(target)) {
        r.problem("backupTarget", target, "none, storagebox (a Hetzner Storage Box you have) or s3 (any S3-compatible bucket)");
        return result;
    }
    // Keys of another target than the one chosen are a mistake worth saying: they would be ignored.
    const stray = target === "storagebox" ? given(s3Keys) : target === "s3" ? given(storageBoxKeys) : given([...storageBoxKeys, ...s3Keys]);
    for (const name of stray) {
        const secret = name === "backupS3SecretAccessKey" || name === "backupS3AccessKeyId";
        r.problem(name, secret ? redacted(r.raw(name)!) : r.raw(name), `nothing while blog:backupTarget is ${target} (it applies to another target)`);
    }
    if (target === "none") {
        if (password !== undefined) r.problem("backupPassword", "[secret]", "nothing while blog:backupTarget is none: there is no repository to open");
        return result;
    }
    if (target === "storagebox") {
        const id = required(r, "backupStorageBoxId", (v) =>
            /^[1-9][0-9]{0,18}$/.test(v) ? undefined : "a Hetzner Storage Box id: digits only (`hcloud storage-box list`, or the console)",
        );
        const hostKey = required(r, "backupStorageBoxHostKey", (v) => {
            const why = publicKeyProblem(v, HOST_KEY_TYPES);
            return why === undefined
                ? undefined
                : "the Storage Box's SSH host key line on port 23, as `ssh-keyscan -p 23 -t ed25519 <box>.your-storagebox.de` prints it " +
                      `without the address ("ssh-ed25519 AAAA..."), checked against Hetzner's published fingerprint; ${why}`;
        });
        if (id !== undefined && hostKey !== undefined) result.target = { kind: "storagebox", storageBoxId: Number(id), hostKey: hostKey.trim() };
        return result;
    }
    const endpoint = required(r, "backupS3Endpoint", (v) =>
        /^https?:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?\/?$/.test(v) || /^https?:\/\/\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?\/?$/.test(v)
            ? undefined
            : "the S3 endpoint as a URL without a path, such as https://fsn1.your-objectstorage.com",
    );
    const bucket = required(r, "backupS3Bucket", (v) =>
        BUCKET.test(v) && !v.includes("..") ? undefined : "an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens",
    );
    const region = r.raw("backupS3Region");
    if (region !== undefined && !/^[a-z0-9-]{2,32}$/.test(region)) {
        r.problem("backupS3Region", region, "a region name such as fsn1 or eu-central-1, or nothing to let restic ask the server");
    }
    const accessKeyId = readSecret(r, "backupS3AccessKeyId", (v) => (ACCESS_KEY_ID.test(v) ? undefined : "an S3 access key id"), true);
    const secretAccessKey = readSecret(r, "backupS3SecretAccessKey", (v) =>
        v.length >= 8 && !/[\s\0]/.test(v) ? undefined : "an S3 secret access key (no whitespace)",
    true);
    if (endpoint && bucket && accessKeyId && secretAccessKey) {
        result.target = { kind: "s3", endpoint: endpoint.replace(/\/$/, ""), bucket, region, accessKeyId, secretAccessKey };
    }
    return result;
}

function required(r: KeyReader, name: string, check: (v: string) => string | undefined): string | undefined {
    const value = r.raw(name);
    if (value === undefined) {
        r.problem(name, null, `${check("")}; set it with \`pulumi config set ${name} <value>\` (blog:backupTarget needs it)`);
        return undefined;
    }
    const expected = check(value);
    if (expected) {
        r.problem(name, value, expected);
        return undefined;
    }
    return value;
}

/** A key that must be set with `--secret`: refused otherwise, and never shown. */
function readSecret(r: KeyReader, name: string, check: (v: string) => string | undefined, needed = false): pulumi.Output<string> | undefined {
    const value = r.raw(name);
    if (value === undefined) {
        if (needed) r.problem(name, null, `${check("")}, set with \`pulumi config set --secret ${name} <value>\` (blog:backupTarget needs it)`);
        return undefined;
    }
    const expected = check(value);
    if (expected) {
        r.problem(name, redacted(value), expected);
        return undefined;
    }
    if (!r.isSecret(name)) {
        r.problem(name, redacted(value), `a secret: set it again with \`pulumi config set --secret ${name} <value>\``);
        return undefined;
    }
    return pulumi.secret(value);
}
