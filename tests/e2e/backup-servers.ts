// Backup targets for the e2e suite: real servers from tests/integration/harness/backup-server.sh,
// each in a network namespace of its own (a Storage Box's SFTP on port 23, or versitygw's S3).
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

const script = path.resolve(__dirname, "../integration/harness/backup-server.sh");

function run(args: string[], input?: string): string {
    return execFileSync("bash", [script, ...args], { input, encoding: "utf8", timeout: 60_000, stdio: ["pipe", "pipe", "pipe"] });
}

export interface BackupServer {
    dir: string;
    /** Its address in the test network (198.19.N.2). */
    addr: string;
    /** sftp: its SSH host key line, as `ssh-keyscan` shows it (what blog:backupStorageBoxHostKey pins). */
    hostKey?: string;
    /** sftp: where the logins' home directories are (the box's disk). */
    boxRoot?: string;
}

function env(dir: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const line of fs.readFileSync(path.join(dir, "server.env"), "utf8").split("\n")) {
        const m = /^([A-Z_0-9]+)=(.*)$/.exec(line);
        if (m) out[m[1]] = m[2];
    }
    return out;
}

/** A Storage Box: sshd on port 23 with internal-sftp only; the stand-in hcloud adds its sub-accounts' logins. */
export function startStorageBox(dir: string): BackupServer {
    run(["start", dir, "sftp"]);
    const e = env(dir);
    return { dir, addr: e.BACKUP_ADDR, hostKey: e.HOST_KEY, boxRoot: e.BOX_ROOT };
}

/** An S3 endpoint (versitygw) with one account; `bucket` is created as a directory of its posix backend. */
export function startS3(dir: string, accessKey: string, secretKey: string, bucket: string): BackupServer {
    run(["start", dir, "s3", accessKey], `${secretKey}\n`);
    fs.mkdirSync(path.join(dir, "s3", bucket), { recursive: true });
    return { dir, addr: env(dir).BACKUP_ADDR };
}

/** Routes a test target (its network namespace, blogt-N) to the server. */
export function connect(server: BackupServer, netns: string): void {
    run(["connect", server.dir, netns]);
}

export function stopServer(server: BackupServer): void {
    run(["stop", server.dir]);
}
