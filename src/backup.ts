import * as command from "@pulumi/command";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { S3Target, StorageBoxTarget } from "./backupConfig";
import { InputProblem, NAMESPACE, failOn } from "./config";

/**
 * Backups off the host: restic, nightly, to a Storage Box sub-account the stack creates or to an
 * S3 bucket, with a repository password the stack generates and keeps (or one you give it to
 * adopt an existing repository). The host job is nix/modules/backup.nix; it reads everything
 * per-stack from three host secrets the deploy delivers (never the Nix store):
 *
 *   backupRepository   restic's repository string (RESTIC_REPOSITORY_FILE)
 *   backupPassword     the repository password (RESTIC_PASSWORD_FILE)
 *   backupEnvironment  the target's credentials, an EnvironmentFile (systemd.exec(5)): the S3 keys,
 *                      or the sub-account's login for nix/modules/units/backup-sftp.sh
 */

/** Relative to the project directory, where Pulumi runs commands (also at preview: an invoke). */
export const BACKUP_STATUS_COMMAND = "bash scripts/backup-status.sh";

/** A Storage Box's SSH port for SFTP, rsync and borg (and restic) with OpenSSH keys (Hetzner's docs). */
export const STORAGE_BOX_SSH_PORT = 23;

/** Where a site's repository lives, in the sub-account's home and in a bucket: one per domain, so a new stack finds an old one's. */
export function repositoryDirectory(domain: string): string {
    return `blog-backups/${domain}`;
}

/** The `sftp://` repository of a sub-account: a path relative to its home directory (the box chroots it there). */
export function sftpRepository(username: string, server: string): string {
    return `sftp://${username}@${server}:${STORAGE_BOX_SSH_PORT}/restic`;
}

/** The `s3:` repository of a bucket (restic's form: s3:<endpoint URL>/<bucket>/<prefix>). */
export function s3Repository(target: Pick<S3Target, "endpoint" | "bucket">, domain: string): string {
    return `s3:${target.endpoint}/${target.bucket}/${repositoryDirectory(domain)}`;
}

/** One EnvironmentFile line; the values are checked single-line and free of what systemd would unquote. */
function envLine(name: string, value: string): string {
    if (/[\n\r\0"'\\]/.test(value)) throw new pulumi.RunError(`${name}: a value with a newline, quote or backslash cannot be an environment file line`);
    return `${name}=${value}\n`;
}

export interface BackupRepositoryArgs {
    /** Where the repository lives. No default. */
    target: StorageBoxTarget | S3Target;
    /** The password of an existing repository to adopt; defaults to a generated one (48 random characters, kept as a secret). */
    password?: pulumi.Input<string>;
    /** The site's domain: it names the repository's directory. No default. */
    domain: string;
    /** Labels of the Storage Box sub-account; defaults to none. */
    labels?: pulumi.Input<Record<string, pulumi.Input<string>>>;
    /** Resolves once the preflight checks passed: nothing is created before. */
    checked: pulumi.Output<unknown>;
}

/**
 * The repository's credentials, made or adopted: the repository password, and for a Storage Box
 * a sub-account of its own (its own home directory, a generated password, SSH only). The host
 * gets them as host secrets (`hostSecrets`); `statusEnvironment` is what scripts/backup-status.sh
 * needs to ask the repository itself, at preview too.
 */
export class BackupRepository extends pulumi.ComponentResource {
    /** The repository password (secret): without it the backups cannot be read. */
    public readonly password: pulumi.Output<string>;
    /** restic's repository string (not secret: a location, no credentials). */
    public readonly repository: pulumi.Output<string>;
    /** The sub-account, with a Storage Box. */
    public readonly subaccount?: hcloud.StorageBoxSubaccount;
    /** backupRepository, backupPassword, backupEnvironment: delivered to /var/lib/blog-secrets by the deploy. */
    public readonly hostSecrets: Record<string, pulumi.Output<string>>;
    /** The environment scripts/backup-status.sh reads the repository with (secret values stay secret). */
    public readonly statusEnvironment: Record<string, pulumi.Output<string>>;

    constructor(name: string, args: BackupRepositoryArgs, opts?: pulumi.ComponentResourceOptions) {
        super("blog:backup:Repository", name, {}, opts);
        const after = { parent: this, dependsOn: [] as pulumi.Resource[] };

        // Not tied to the server: it stays the same across replacements, and only a new stack
        // (or an explicit backupPassword) changes it. Letters and digits: no quoting anywhere.
        this.password =
            args.password !== undefined
                ? pulumi.secret(args.password)
                : pulumi.secret(new random.RandomPassword(`${name}-repository-password`, { length: 48, special: false }, after).result);

        let environment: pulumi.Output<string>;
        const status: Record<string, pulumi.Output<string>> = {};
        if (args.target.kind === "storagebox") {
            const target = args.target;
            // The Storage Box password policy: 12-128 characters with an upper and a lower case letter, a
            // digit and a special character (docs.hetzner.cloud, "Storage Boxes password policy"). The
            // specials picked need no quoting in an environment file or a shell.
            const loginPassword = new random.RandomPassword(
                `${name}-storagebox-password`,
                { length: 40, minUpper: 2, minLower: 2, minNumeric: 2, minSpecial: 2, overrideSpecial: "-_.+" },
                after,
            );
            this.subaccount = new hcloud.StorageBoxSubaccount(
                `${name}-storagebox`,
                {
                    storageBoxId: args.checked.apply(() => target.storageBoxId),
                    homeDirectory: repositoryDirectory(args.domain),
                    password: loginPassword.result,
                    description: `restic backups of ${args.domain} (Pulumi stack ${pulumi.getProject()}/${pulumi.getStack()})`,
                    // SSH only (SFTP on port 23). Reachable from outside Hetzner's network: the preview asks
                    // the repository from where `pulumi` runs, and a restore after a total loss may run
                    // on a machine elsewhere. Only this sub-account's password opens it.
                    accessSettings: {
                        sshEnabled: true,
                        reachableExternally: true,
                        sambaEnabled: false,
                        webdavEnabled: false,
                        readonly: false,
                    },
                    labels: args.labels,
                },
                // Deleting a sub-account keeps its directory (docs.hetzner.com, Storage Box "Additional
                // users"): the repository outlives the stack, and a new stack's sub-account finds it.
                { parent: this, additionalSecretOutputs: ["password"] },
            );
            const sub = this.subaccount;
            this.repository = pulumi.all([sub.username, sub.server]).apply(([u, s]) => sftpRepository(u, s));
            const login = {
                BLOG_BACKUP_SFTP_USER: sub.username,
                BLOG_BACKUP_SFTP_HOST: sub.server,
                BLOG_BACKUP_SFTP_PORT: pulumi.output(String(STORAGE_BOX_SSH_PORT)),
                BLOG_BACKUP_SFTP_HOST_KEY: pulumi.output(target.hostKey),
            };
            environment = pulumi.secret(
                pulumi
                    .all([sub.username, sub.server, loginPassword.result])
                    .apply(([user, server, password]) =>
                        [
                            envLine("BLOG_BACKUP_SFTP_USER", user),
                            envLine("BLOG_BACKUP_SFTP_HOST", server),
                            envLine("BLOG_BACKUP_SFTP_PORT", String(STORAGE_BOX_SSH_PORT)),
                            envLine("BLOG_BACKUP_SFTP_HOST_KEY", target.hostKey),
                            envLine("BLOG_BACKUP_SFTP_PASSWORD", password),
                        ].join(""),
                    ),
            );
            Object.assign(status, login, { BLOG_BACKUP_SFTP_PASSWORD: pulumi.secret(loginPassword.result) });
        } else {
            const target = args.target;
            this.repository = pulumi.output(s3Repository(target, args.domain));
            environment = pulumi.secret(
                pulumi.all([target.accessKeyId, target.secretAccessKey]).apply(([id, key]) =>
                    [
                        envLine("AWS_ACCESS_KEY_ID", id),
                        envLine("AWS_SECRET_ACCESS_KEY", key),
                        envLine("BLOG_BACKUP_S3_REGION", target.region ?? ""),
                    ].join(""),
                ),
            );
            Object.assign(status, {
                AWS_ACCESS_KEY_ID: pulumi.secret(target.accessKeyId),
                AWS_SECRET_ACCESS_KEY: pulumi.secret(target.secretAccessKey),
                BLOG_BACKUP_S3_REGION: pulumi.output(target.region ?? ""),
            });
        }
        this.hostSecrets = {
            backupRepository: pulumi.secret(this.repository),
            backupPassword: this.password,
            backupEnvironment: environment,
        };
        this.statusEnvironment = { ...status, RESTIC_REPOSITORY: this.repository, RESTIC_PASSWORD: this.password };
        this.registerOutputs({ repository: this.repository });
    }
}

/** What scripts/backup-status.sh found in the repository. */
export type RepositoryStatus =
    // `time`: ISO 8601, UTC (a plain value: Outputs turn a Date into an empty object).
    | { state: "snapshot"; id: string; time: string; paths: string[] }
    | { state: "empty" }
    | { state: "unknown"; reason: string };

const SNAPSHOT_ID = /^[0-9a-f]{64}$/;

/**
 * Reads the one line scripts/backup-status.sh prints: `{"state":"snapshot","id":...,"time":...,
 * "paths":[...]}`, `{"state":"empty"}` or `{"state":"unknown","reason":...}`. Anything else is
 * `unknown`: the answer comes from a repository and a network, and is checked before use.
 */
export function parseStatus(stdout: string): RepositoryStatus {
    const line = stdout.trim().split("\n").pop() ?? "";
    let parsed: unknown;
    try {
        parsed = JSON.parse(line);
    } catch {
        return { state: "unknown", reason: "the status script printed no JSON" };
    }
    if (typeof parsed !== "object" || parsed === null) return { state: "unknown", reason: "the status script printed no object" };
    const p = parsed as Record<string, unknown>;
    if (p.state === "empty") return { state: "empty" };
    if (p.state === "unknown" && typeof p.reason === "string") return { state: "unknown", reason: p.reason.slice(0, 300) };
    if (p.state === "snapshot" && typeof p.id === "string" && SNAPSHOT_ID.test(p.id) && typeof p.time === "string") {
        // restic writes nanoseconds and the host's offset (2026-12-07T02:13:00.245620247+01:00).
        const time = new Date(p.time.replace(/(\.\d{3})\d+/, "$1"));
        const paths = Array.isArray(p.paths) ? p.paths.filter((x): x is string => typeof x === "string").slice(0, 20) : [];
        if (!Number.isNaN(time.getTime())) return { state: "snapshot", id: p.id, time: time.toISOString(), paths };
    }
    return { state: "unknown", reason: "the status script printed an answer of another form" };
}

/** "3 h 12 min", "2 days 4 h": how long ago, for people. */
export function age(from: Date, now: Date): string {
    const minutes = Math.max(0, Math.round((now.getTime() - from.getTime()) / 60000));
    if (minutes < 60) return `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${minutes % 60} min`;
    return `${Math.floor(hours / 24)} days ${hours % 24} h`;
}

/** A nightly backup older than this means at least one night failed. */
export const STALE_HOURS = 36;

/**
 * What the plan is told about the backups: always where the newest is (an info line), and a
 * warning when it is stale or missing, and when the plan puts data at risk (`risks`: what
 * preflight found the plan does to the server or the volume).
 */
export function statusMessages(status: RepositoryStatus, risks: string[], now: Date = new Date()): { info: string[]; warnings: string[] } {
    const info: string[] = [];
    const warnings: string[] = [];
    let newest: string;
    if (status.state === "snapshot") {
        const time = new Date(status.time);
        const old = age(time, now);
        newest = `the newest backup is ${old} old (snapshot ${status.id.slice(0, 8)}, ${status.time})`;
        info.push(`backup: ${newest}${status.paths.length > 0 ? `, of ${status.paths.join(", ")}` : ""}.`);
        if (now.getTime() - time.getTime() > STALE_HOURS * 3600_000) {
            warnings.push(
                `backup: the last good backup is ${old} old: the nightly backup has failed since (on the host: ` +
                    "systemctl status restic-backups-blog; cat /var/lib/blog-backup/status.json).",
            );
        }
    } else if (status.state === "empty") {
        newest = "there is no backup yet (the repository holds no snapshot)";
        info.push(`backup: ${newest}; the host makes the first one tonight, or now with \`scripts/backup.sh run\`.`);
    } else {
        newest = `how old the newest backup is could not be determined (${status.reason})`;
        warnings.push(`backup: ${newest}.`);
    }
    for (const risk of risks) warnings.push(`${risk} Before it goes ahead: ${newest}.`);
    return { info, warnings };
}

/**
 * Asks the repository itself, at every preview and update (an invoke: it runs at preview too,
 * with no SSH key, reaching only the backup target): the newest snapshot, or why it could not
 * tell. The credentials travel in the environment (never argv) and the script prints none of them.
 */
export function repositoryStatus(env: Record<string, pulumi.Input<string>>): pulumi.Output<RepositoryStatus> {
    return pulumi.output(env).apply((environment) =>
        command.local.run({ command: BACKUP_STATUS_COMMAND, environment, logging: "none" }).then(
            (r) => parseStatus(r.stdout),
            // The script always exits 0; a failure here is the invoke's own (no bash, no script).
            (err: Error): RepositoryStatus => ({
                state: "unknown",
                reason: `${BACKUP_STATUS_COMMAND} could not run (${String(err?.message ?? err).split("\n")[0].slice(0, 200)})`,
            }),
        ),
    );
}

/** Refusals that need the Storage Box itself: it must exist in the project (`hcloud.getStorageBox`). */
export function storageBoxProblems(id: number, found: { id?: number; username?: string } | undefined, error?: string): InputProblem[] {
    if (found && found.username) return [];
    return [
        new InputProblem(
            `${NAMESPACE}:backupStorageBoxId`,
            String(id),
            `the id of a Storage Box in the project of hcloud:token (\`hcloud storage-box list\`)${error ? `: Hetzner answered ${error}` : ""}`,
        ),
    ];
}

/** Fails preview unless the Storage Box exists; resolves when it does. */
export function checkStorageBox(id: number): pulumi.Output<void> {
    return pulumi.output(
        hcloud.getStorageBox({ id }).then(
            (box) => failOn(storageBoxProblems(id, box), "The backup target cannot be used (nothing was created or changed):"),
            (err: Error) => failOn(storageBoxProblems(id, undefined, String(err?.message ?? err).split("\n")[0]), "The backup target cannot be used (nothing was created or changed):"),
        ),
    );
}
