// A stand-in server's machine: a real target started by tests/integration/harness/target.sh (a
// container booting systemd, in a network namespace of its own), so that installs and deploys
// reach it at its own addresses, as they would a Hetzner server. Its owner is the test process
// (BLOG_E2E_OWNER_PID): a target whose test process died is reclaimed by the next start.
import { execFile, execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { repoRoot } from "./repo";

export interface TargetInfo {
    dir: string;
    ipv4: string;
    /** Empty when the target has no IPv6 address (TARGET_IPV6=0). */
    ipv6: string;
    netns: string;
    hostKey: string;
}

function targetScript(): string {
    return path.join(repoRoot(), "tests/integration/harness/target.sh");
}

function parseEnv(text: string): Record<string, string> {
    const env: Record<string, string> = {};
    for (const line of text.split("\n")) {
        const m = /^([A-Z_0-9]+)=(.*)$/.exec(line);
        if (m) env[m[1]] = m[2].replace(/^'(.*)'$/, "$1");
    }
    return env;
}

/**
 * Starts a target whose root accepts `authorizedKeys` (what Hetzner writes into root's
 * authorized_keys from the server's SSH keys); serves HTTPS with BLOG_E2E_TLS_CERT/KEY when set.
 * `hostKey`, an ed25519 private key, is the one its sshd presents (what cloud-init's `ssh_keys`
 * writes from the user data); without it the target makes its own. The interface to target.sh is
 * one variable, TARGET_HOST_KEY_FILE (a file in `dir`, 0600).
 */
export function startTarget(dir: string, authorizedKeys: string[], hostKey?: string): Promise<TargetInfo> {
    fs.mkdirSync(dir, { recursive: true });
    const keys = path.join(dir, "hetzner-authorized-keys");
    fs.writeFileSync(keys, authorizedKeys.map((k) => `${k.trim()}\n`).join(""), { mode: 0o600 });
    const env: NodeJS.ProcessEnv = {
        ...process.env,
        TARGET_AUTHORIZED_KEYS: keys,
        TARGET_OWNER_PID: process.env.BLOG_E2E_OWNER_PID ?? String(process.pid),
    };
    if (hostKey !== undefined) {
        const file = path.join(dir, "cloud-init-host-key");
        fs.writeFileSync(file, hostKey.endsWith("\n") ? hostKey : `${hostKey}\n`, { mode: 0o600 });
        env.TARGET_HOST_KEY_FILE = file;
    }
    if (process.env.BLOG_E2E_TLS_CERT) env.TARGET_TLS_CERT = process.env.BLOG_E2E_TLS_CERT;
    if (process.env.BLOG_E2E_TLS_KEY) env.TARGET_TLS_KEY = process.env.BLOG_E2E_TLS_KEY;
    return new Promise((resolve, reject) => {
        execFile("bash", [targetScript(), "start", dir], { env, timeout: 240_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
            if (err) {
                reject(new Error(`stand-in hcloud: starting the server's machine (target.sh start ${dir}) failed: ${stderr.trim() || err.message}`));
                return;
            }
            const env = parseEnv(stdout);
            resolve({ dir, ipv4: env.TARGET_ADDR4, ipv6: env.TARGET_ADDR6 ?? "", netns: env.NETNS ?? "", hostKey: env.HOST_KEY ?? "" });
        });
    });
}

/**
 * Stops the target and removes everything it made (target.sh stop). The directory stays for tests
 * to read (sshd.log, in the target's upper layer); target.env gets STANDIN_DELETED=<time>, so that
 * a test looking for the live server at an address (addresses are reused) can skip it.
 */
export function stopTarget(dir: string): void {
    const env = path.join(dir, "target.env");
    if (!fs.existsSync(env)) return;
    execFileSync("bash", [targetScript(), "stop", dir], { stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
    fs.appendFileSync(env, `STANDIN_DELETED=${new Date().toISOString()}\n`);
}

/** The veth pair target.sh made for namespace blogt-N: btN-h on this side, btN-t inside. */
function links(netns: string): { host: string; inside: string; n: string } | undefined {
    const m = /^blogt-(\d+)$/.exec(netns);
    return m ? { host: `bt${m[1]}-h`, inside: `bt${m[1]}-t`, n: m[1] } : undefined;
}

/** Powers the machine "off": its link goes down, so it answers nothing, as a stopped server. */
export function powerOff(netns: string): void {
    const l = links(netns);
    if (l) execFileSync("ip", ["link", "set", l.host, "down"], { stdio: "ignore" });
}

/**
 * Powers it on again, with the addresses it had (a link going down drops its IPv6 addresses): it
 * boots again (target.sh reboot: the machine was off), into its boot default.
 */
export function powerOn(dir: string, netns: string, ipv6: string): void {
    const l = links(netns);
    if (!l) return;
    execFileSync("ip", ["link", "set", l.host, "up"], { stdio: "ignore" });
    if (ipv6) {
        const prefix = ipv6.replace(/::2$/, "::");
        execFileSync("ip", ["-6", "addr", "replace", `${prefix}1/64`, "dev", l.host, "nodad"], { stdio: "ignore" });
        execFileSync("ip", ["-6", "-n", netns, "addr", "replace", `${prefix}2/64`, "dev", l.inside, "nodad"], { stdio: "ignore" });
    }
    execFileSync("bash", [targetScript(), "reboot", dir], { stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 });
}

/** Whether the target in `dir` is up: started, not stopped, its supervisor (what boots it) alive. */
export function targetAlive(dir: string): boolean {
    const file = path.join(dir, "target.env");
    if (!fs.existsSync(file)) return false;
    const env = parseEnv(fs.readFileSync(file, "utf8"));
    if (env.STANDIN_DELETED || !env.SUPERVISOR_PID) return false;
    try {
        process.kill(Number(env.SUPERVISOR_PID), 0);
        return true;
    } catch {
        return false;
    }
}
