// The e2e suite's world: the real Pulumi CLI (scripts/build-engine.sh) driven through the
// Automation API, on a temporary copy of the project whose flake is a test host (fake system
// closures, host facts in host.json), with stand-in providers (tests/e2e/providers) whose
// "servers" are real SSH targets in network namespaces (tests/integration/harness/target.sh).
// State lives in a file:// backend in the temporary directory; secrets use the passphrase
// provider. Every process a test starts is stopped by pid; every wait is bounded.
import { execFileSync, spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { EngineEvent, LocalWorkspace, PulumiCommand, Stack } from "@pulumi/pulumi/automation";
import { nixEnv } from "../nixConfig";
import { copyClosureSources } from "../integration/harness/target";
import { buildStandIns } from "./providers/build";

export const repoRoot = path.resolve(__dirname, "../..");
const harnessDir = path.join(repoRoot, "tests/integration/harness");
const targetScript = path.join(harnessDir, "target.sh");

export const DOMAIN = "blog.e2e-site.test";
export const ZONE_NAME = "e2e-site.test";
export const ZONE_ID = "e2e0000000000000000000000000cafe";
/** Provider tokens as the stack holds them; the suite greps state and logs for them. */
export const HCLOUD_TOKEN = crypto.randomBytes(32).toString("hex");
export const CLOUDFLARE_TOKEN = crypto.randomBytes(20).toString("hex");
const PASSPHRASE = "e2e passphrase";

/** The project files a `pulumi up` needs, copied (the flake is replaced by the test host). */
const PROJECT_FILES = ["Pulumi.yaml", "index.ts", "src", "scripts", "tsconfig.json", "package.json"];

export interface HostSpec {
    domain: string;
    acmeEmail: string;
    adminSshKeys: string[];
    system: string;
    platform: "hetzner-cloud" | "generic";
    disk: string | null;
    tls: "acme" | "cloudflare-origin";
    dataVolume: boolean;
}

export interface Configuration {
    host: HostSpec;
    /** The fake system's name: a new name is a new closure. */
    closure: string;
    /** Names of the secrets its services read (blog.secrets); defaults to none. */
    secrets?: string[];
    /** Whether its activation makes the site answer; defaults to true (false: the deploy's health check fails). */
    healthy?: boolean;
    /** The backup's units (tests/integration/harness/backup-units.nix) and the backend; defaults to none. */
    backup?: boolean;
}

export interface OpResult {
    /** Everything the CLI printed, stdout and stderr (with the engine's verbose log). */
    log: string;
    events: EngineEvent[];
    /** Set when the operation failed. */
    error?: Error;
    summary?: Record<string, number>;
}

export interface KeyPair {
    publicKey: string;
    privateKey: string;
}

function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): string {
    return execFileSync(cmd, args, {
        encoding: "utf8",
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        timeout: opts.timeoutMs ?? 120_000,
        stdio: ["ignore", "pipe", "pipe"],
        maxBuffer: 64 * 1024 * 1024,
    });
}

/** An OpenSSH key line without its comment ("type base64"), as the stack pins it. */
export function keyLine(line: string): string {
    return line.trim().split(/\s+/).slice(0, 2).join(" ");
}

/** A new ed25519 key pair, made by ssh-keygen. */
export function newKeyPair(dir: string, name: string): KeyPair {
    const file = path.join(dir, name);
    sh("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", file]);
    return { publicKey: fs.readFileSync(`${file}.pub`, "utf8").trim(), privateKey: fs.readFileSync(file, "utf8") };
}

/** The version of @pulumi/pulumi that package-lock.json pins: the engine is built at this version. */
export function lockedPulumiVersion(): string {
    const lock = JSON.parse(fs.readFileSync(path.join(repoRoot, "package-lock.json"), "utf8"));
    const version = lock.packages?.["node_modules/@pulumi/pulumi"]?.version;
    if (typeof version !== "string") throw new Error("package-lock.json pins no version of @pulumi/pulumi");
    return version;
}

/**
 * The Automation API's handle on the engine (its minimum-version check on), checked to be exactly
 * the version package-lock.json pins.
 */
export async function engineCommand(root = engineRoot()): Promise<PulumiCommand> {
    const locked = lockedPulumiVersion();
    const command = await PulumiCommand.get({ root });
    if (command.version?.format() !== locked) {
        throw new Error(`the engine in ${root} is pulumi ${command.version?.format()}, not ${locked} (package-lock.json): run \`bash scripts/build-engine.sh\``);
    }
    return command;
}

/** The engine's installation root (bin/pulumi), built by scripts/build-engine.sh. */
export function engineRoot(): string {
    const r = spawnSync("bash", [path.join(repoRoot, "scripts/build-engine.sh"), "--print"], { encoding: "utf8" });
    if (r.status !== 0) {
        throw new Error("the Pulumi engine is not built: run `bash scripts/build-engine.sh` (scripts/setup.sh does)");
    }
    return r.stdout.trim().split("\n").pop()!;
}

/** A CA and a certificate for DOMAIN, so the deploy's health check speaks HTTPS to the target. */
function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
    const ca = path.join(dir, "ca.pem");
    const caKey = path.join(dir, "ca.key");
    const cert = path.join(dir, "site.pem");
    const key = path.join(dir, "site.key");
    const csr = path.join(dir, "site.csr");
    const ext = path.join(dir, "site.ext");
    sh("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", caKey, "-out", ca, "-days", "2", "-subj", "/CN=blog e2e test CA"]);
    sh("openssl", ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", `/CN=${DOMAIN}`]);
    fs.writeFileSync(ext, `subjectAltName=DNS:${DOMAIN}\n`);
    sh("openssl", ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext]);
    return { ca, cert, key };
}

let standInsDir: string | undefined;

/** One stack of a temporary copy of the project, and the fake cloud it lives in. */
export class E2eStack {
    readonly dir: string;
    readonly projectDir: string;
    readonly cloudDir: string;
    readonly admin: KeyPair;
    stack!: Stack;
    private env!: Record<string, string>;
    private engine!: string;
    private pulumiHome!: string;
    private configurations: Record<string, Configuration> = {};

    constructor(readonly name = "e2e") {
        this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "blog-e2e-"));
        this.projectDir = path.join(this.dir, "project");
        this.cloudDir = path.join(this.dir, "cloud");
        fs.mkdirSync(this.cloudDir);
        this.admin = newKeyPair(this.dir, "admin");
    }

    /**
     * Copies the project, writes the test host, creates the stack and sets its config: by default
     * the Cloudflare zone, `sshPrivateKey` and both provider tokens (`providers: false` sets neither
     * tokens nor zone, for a stack that must not need them).
     */
    async init(
        config: Record<string, string> = {},
        secretConfig: Record<string, string> = {},
        opts: { providers?: boolean; host?: Partial<HostSpec>; env?: Record<string, string>; backup?: boolean; emptyProgram?: boolean } = {},
    ): Promise<void> {
        fs.mkdirSync(this.projectDir);
        for (const f of PROJECT_FILES) fs.cpSync(path.join(repoRoot, f), path.join(this.projectDir, f), { recursive: true });
        if (opts.emptyProgram) {
            // The engine's floor (tests/e2e/cost.test.ts): the same project, runtime and engine, a
            // program that declares nothing.
            fs.writeFileSync(path.join(this.projectDir, "index.ts"), "// A program that declares nothing.\nexport {};\n");
        }
        fs.symlinkSync(path.join(repoRoot, "node_modules"), path.join(this.projectDir, "node_modules"));
        const nixDir = path.join(this.projectDir, "nix");
        fs.mkdirSync(nixDir);
        fs.copyFileSync(path.join(repoRoot, "tests/fixtures/e2e-flake/flake.nix"), path.join(nixDir, "flake.nix"));
        // The test systems' sources (the backup's units for a test system among them).
        copyClosureSources(nixDir);
        this.setConfiguration("blog", { host: this.hostFacts(opts.host), closure: "v1", backup: opts.backup });

        standInsDir ??= buildStandIns(path.join(os.tmpdir(), `blog-e2e-providers-${process.pid}`));
        const certs = makeCertificates(this.dir);
        this.engine = engineRoot();
        this.pulumiHome = path.join(this.dir, "pulumi-home");
        fs.mkdirSync(path.join(this.dir, "state"));
        this.env = {
            ...nixEnv(),
            PATH: `${standInsDir}:${path.join(this.engine, "bin")}:${process.env.PATH}`,
            PULUMI_HOME: this.pulumiHome,
            PULUMI_BACKEND_URL: `file://${path.join(this.dir, "state")}`,
            PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
            PULUMI_SKIP_UPDATE_CHECK: "true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
            BLOG_E2E_REPO: repoRoot,
            // The test process owns the servers' targets (they outlive each provider process).
            BLOG_E2E_OWNER_PID: String(process.pid),
            BLOG_E2E_CLOUD_DIR: this.cloudDir,
            BLOG_E2E_TLS_CERT: certs.cert,
            BLOG_E2E_TLS_KEY: certs.key,
            BLOG_E2E_CLOUDFLARE_ZONES: JSON.stringify({ [ZONE_ID]: ZONE_NAME }),
            BLOG_E2E_HETZNER_ZONES: JSON.stringify([ZONE_NAME]),
            // The deploy's health check trusts the test CA; the install uses the stand-in.
            CURL_CA_BUNDLE: certs.ca,
            NIXOS_ANYWHERE: path.join(repoRoot, "tests/e2e/fake-nixos-anywhere.sh"),
            HEALTH_TIMEOUT: "20",
            CONNECT_TIMEOUT: "60",
            ...opts.env,
        };
        const ws = await LocalWorkspace.create({
            workDir: this.projectDir,
            pulumiHome: this.pulumiHome,
            envVars: this.env,
            secretsProvider: "passphrase",
            pulumiCommand: await engineCommand(this.engine),
        });
        this.stack = await Stack.create(this.name, ws);
        const providers = opts.providers ?? true;
        await this.setConfig(
            { ...(providers ? { "blog:cloudflareZoneId": ZONE_ID } : {}), ...config },
            {
                "blog:sshPrivateKey": this.admin.privateKey,
                ...(providers ? { "hcloud:token": HCLOUD_TOKEN, "cloudflare:apiToken": CLOUDFLARE_TOKEN } : {}),
                ...secretConfig,
            },
        );
    }

    /**
     * The environment this stack's CLI runs in (the engine and the stand-ins first on PATH, the
     * fake cloud's settings, the state backend and passphrase), for a test that runs `pulumi` itself.
     */
    cliEnvironment(): Record<string, string> {
        return { ...this.env };
    }

    hostFacts(overrides: Partial<HostSpec> = {}): HostSpec {
        return {
            domain: DOMAIN,
            acmeEmail: `admin@${ZONE_NAME}`,
            adminSshKeys: [this.admin.publicKey],
            system: "x86_64-linux",
            platform: "hetzner-cloud",
            disk: null,
            tls: "acme",
            dataVolume: false,
            ...overrides,
        };
    }

    /** Writes one configuration of the test host flake (host facts and system). */
    setConfiguration(name: string, c: Configuration): void {
        this.configurations[name] = c;
        fs.writeFileSync(
            path.join(this.projectDir, "nix/host.json"),
            JSON.stringify({ configurations: this.configurations }, null, 2),
        );
    }

    /** The store path the flake's configuration evaluates to, asked of nix directly. */
    toplevel(configuration = "blog"): string {
        return sh(
            "nix",
            ["eval", "--raw", `./nix#nixosConfigurations."${configuration}".config.system.build.toplevel.outPath`],
            // process.env explicitly: jest's sandbox holds the tests' Nix settings, Node's default would not.
            { cwd: this.projectDir, env: process.env, timeoutMs: 60_000 },
        ).trim();
    }

    configuration(name = "blog"): Configuration {
        return this.configurations[name];
    }

    async setConfig(plain: Record<string, string>, secret: Record<string, string> = {}): Promise<void> {
        const all = {
            ...Object.fromEntries(Object.entries(plain).map(([k, value]) => [k, { value }])),
            ...Object.fromEntries(Object.entries(secret).map(([k, value]) => [k, { value, secret: true }])),
        };
        await this.stack.setAllConfig(all);
    }

    async removeConfig(key: string, opts: { path?: boolean } = {}): Promise<void> {
        await this.stack.removeConfig(key, opts.path);
    }

    /** Sets one value at a path as a secret, as `pulumi config set --secret --path` does (e.g. `blog:hostSecrets.apiKey`). */
    async setSecretAtPath(key: string, value: string): Promise<void> {
        await this.stack.setConfig(key, { value, secret: true }, true);
    }

    private async op(run: (on: { onEvent: (e: EngineEvent) => void; onOutput: (s: string) => void }) => Promise<{
        stdout: string;
        stderr: string;
        summary?: { resourceChanges?: Record<string, number> };
    }>): Promise<OpResult> {
        const events: EngineEvent[] = [];
        let streamed = "";
        const onEvent = (e: EngineEvent) => events.push(e);
        const onOutput = (s: string) => (streamed += s);
        try {
            const r = await run({ onEvent, onOutput });
            return { log: `${r.stdout}\n${r.stderr}`, events, summary: r.summary?.resourceChanges };
        } catch (err) {
            const e = err as Error & { commandResult?: { stdout: string; stderr: string } };
            const log = `${streamed}\n${e.commandResult?.stdout ?? ""}\n${e.commandResult?.stderr ?? ""}\n${e.message}`;
            return { log, events, error: e };
        }
    }

    /**
     * The engine's log goes to stderr, which the result keeps: the secrets test reads it. Level 2
     * is the most verbose that is free of secrets, whatever the program does: from 3 the engine
     * logs every debug message of the Node.js SDK, which include each RegisterResource response
     * with its outputs in the clear (pulumi/pulumi sdk/go/common/diag/sink.go Debugf at V(3);
     * sdk/nodejs/runtime/resource.ts "RegisterResource RPC finished"); from 7 it prints the inputs
     * it plans with, from 9 the values it marshals for provider calls.
     */
    private static readonly LOGGING = { logVerbosity: 2, logToStdErr: true, color: "never" as const };

    /** What the CLI runs with by default: no -v, no log on stderr. */
    private static readonly DEFAULT_LOGGING = { color: "never" as const };

    private static logging(opts: { defaultVerbosity?: boolean }) {
        return opts.defaultVerbosity ? E2eStack.DEFAULT_LOGGING : E2eStack.LOGGING;
    }

    /** `replace`: URNs to replace (`--replace`); `defaultVerbosity`: without the engine's log on stderr. */
    preview(opts: { replace?: string[]; defaultVerbosity?: boolean } = {}): Promise<OpResult> {
        return this.op((on) => this.stack.preview({ ...on, ...E2eStack.logging(opts), diff: true, replace: opts.replace }));
    }

    /** `replace`: URNs to replace (`pulumi up --replace`); `defaultVerbosity`: without the engine's log on stderr. */
    up(opts: { replace?: string[]; defaultVerbosity?: boolean } = {}): Promise<OpResult> {
        return this.op((on) => this.stack.up({ ...on, ...E2eStack.logging(opts), diff: true, replace: opts.replace }));
    }

    /** The URN of the stack's one resource named `name` (the last part of its URN). */
    async urn(name: string): Promise<string> {
        const found = ((await this.stack.exportStack()).deployment.resources ?? []).filter(
            (r: { urn: string; delete?: boolean }) => r.urn.endsWith(`::${name}`) && !r.delete,
        );
        if (found.length !== 1) throw new Error(`expected one resource named ${name} in the state, found ${found.length}`);
        return found[0].urn;
    }

    /**
     * Rewrites the stack's state (`pulumi stack export`, an edit, `pulumi stack import`), as a state
     * written by an older program or engine would be.
     */
    async editState(edit: (resources: Array<Record<string, any>>) => void): Promise<void> {
        const state = await this.stack.exportStack();
        edit(state.deployment.resources ?? []);
        await this.stack.importStack(state);
    }

    destroy(opts: { defaultVerbosity?: boolean } = {}): Promise<OpResult> {
        return this.op((on) => this.stack.destroy({ ...on, ...E2eStack.logging(opts) }));
    }

    async outputs(): Promise<Record<string, unknown>> {
        const out = await this.stack.outputs();
        return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.value]));
    }

    /** The stack's state file as the file backend keeps it (raw text). */
    stateText(): string {
        const stacks = path.join(this.dir, "state/.pulumi/stacks");
        const found = (fs.readdirSync(stacks, { recursive: true }) as string[]).filter((f) => f.endsWith(`${this.name}.json`));
        if (found.length !== 1) throw new Error(`expected one state file for ${this.name} under ${stacks}, found ${found}`);
        return fs.readFileSync(path.join(stacks, found[0]), "utf8");
    }

    /** The state with secrets decrypted (`pulumi stack export --show-secrets`). */
    exportWithSecrets(): { deployment: { resources?: Array<Record<string, any>> } } {
        const out = sh(path.join(this.engine, "bin/pulumi"), ["stack", "export", "--show-secrets", "--stack", this.name], {
            env: { ...process.env, ...this.env },
            cwd: this.projectDir,
        });
        return JSON.parse(out);
    }

    /**
     * Runs one of the project's scripts (`scripts/<name>`) in the project's copy, with the stack's
     * environment (the engine and the stand-ins on PATH, the backend, the passphrase) and `--stack`
     * left to the caller; bounded.
     */
    script(name: string, args: string[], env: Record<string, string> = {}, timeoutMs = 900_000): { status: number | null; stdout: string; stderr: string } {
        const r = spawnSync("bash", [path.join(this.projectDir, "scripts", name), ...args], {
            cwd: this.projectDir,
            env: { ...process.env, ...this.env, ...env },
            encoding: "utf8",
            timeout: timeoutMs,
            maxBuffer: 64 * 1024 * 1024,
        });
        return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    }

    /** The fake cloud's records (written by the stand-in providers). */
    cloud(name: "hcloud" | "cloudflare"): any {
        const file = path.join(this.cloudDir, `${name}.json`);
        return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : {};
    }

    /** Target directories of the servers running now (not deleted, what boots them alive). */
    targetDirs(): string[] {
        return this.allTargetDirs().filter((d) => {
            const env = this.targetEnv(d);
            return !env.STANDIN_DELETED && !!env.SUPERVISOR_PID && fs.existsSync(`/proc/${env.SUPERVISOR_PID}`);
        });
    }

    /** Target directories of every server the stand-in started, stopped ones too (each holds target.env). */
    allTargetDirs(): string[] {
        const dirs: string[] = [];
        const walk = (d: string) => {
            for (const e of fs.readdirSync(d, { withFileTypes: true })) {
                if (!e.isDirectory()) continue;
                const p = path.join(d, e.name);
                if (fs.existsSync(path.join(p, "target.env"))) dirs.push(p);
                else walk(p);
            }
        };
        walk(this.cloudDir);
        return dirs;
    }

    /** The target.env of a target directory, parsed. */
    targetEnv(dir: string): Record<string, string> {
        const env: Record<string, string> = {};
        for (const line of fs.readFileSync(path.join(dir, "target.env"), "utf8").split("\n")) {
            const m = /^([A-Z_0-9]+)=(.*)$/.exec(line);
            if (m) env[m[1]] = m[2].replace(/^'(.*)'$/, "$1");
        }
        return env;
    }

    /** The target whose IPv4 address is `ipv4` (a running server). */
    targetAt(ipv4: string): string {
        const dir = this.targetDirs().find((d) => this.targetEnv(d).TARGET_ADDR4 === ipv4);
        if (!dir) throw new Error(`no target has address ${ipv4}`);
        return dir;
    }

    /** Runs a shell command inside a target's namespace (not over SSH). */
    onTarget(dir: string, command: string): string {
        return sh(targetScript, ["run", dir, "sh", "-c", command]).trim();
    }

    /** The host key a target's sshd presents now, as a key line. */
    presentedHostKey(dir: string): string {
        return keyLine(this.onTarget(dir, "cat /etc/ssh/ssh_host_ed25519_key.pub"));
    }

    /** Accepted SSH logins on every target so far. */
    sshLogins(): number {
        let n = 0;
        for (const d of this.allTargetDirs()) {
            const log = path.join(d, "sshd.log");
            if (fs.existsSync(log)) n += (fs.readFileSync(log, "utf8").match(/Accepted publickey/g) ?? []).length;
        }
        return n;
    }

    /** Lines nixos-anywhere (the stand-in) was run with, one per install. */
    installs(): string[] {
        const file = path.join(this.cloudDir, "nixos-anywhere.log");
        return fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n").filter(Boolean) : [];
    }

    /**
     * Starts a machine the stack does not create (a target in a network namespace of its own,
     * root accepting the admin key); returns its target.env. cleanup() stops it.
     */
    startMachine(): Record<string, string> {
        const dir = path.join(this.cloudDir, "machines", `m${this.allTargetDirs().length}`);
        fs.mkdirSync(dir, { recursive: true });
        const keys = path.join(this.dir, "machine-authorized-keys");
        fs.writeFileSync(keys, `${this.admin.publicKey}\n`);
        sh(targetScript, ["start", dir], {
            timeoutMs: 240_000,
            env: {
                ...process.env,
                TARGET_OWNER_PID: String(process.pid),
                TARGET_AUTHORIZED_KEYS: keys,
                TARGET_TLS_CERT: this.env.BLOG_E2E_TLS_CERT,
                TARGET_TLS_KEY: this.env.BLOG_E2E_TLS_KEY,
            },
        });
        return this.targetEnv(dir);
    }

    /** Stops whatever a failed test left running (its targets), removes the directory. */
    cleanup(): void {
        for (const d of this.allTargetDirs()) spawnSync(targetScript, ["stop", d], { timeout: 30_000 });
        fs.rmSync(this.dir, { recursive: true, force: true });
    }
}

/** The result, when the operation succeeded; otherwise an error with its error lines and the log's end. */
export function ok(r: OpResult): OpResult {
    if (r.error) {
        // The error lines, and the problems the program lists under one ("  - key: got ...; expected ...").
        const errors = r.log.split("\n").filter((l) => /error|failed|^\s+- /i.test(l)).slice(0, 40);
        throw new Error(`operation failed:\n${errors.join("\n").slice(0, 8000)}\n...\n${r.log.slice(-3000)}`);
    }
    return r;
}

/** Operations (create, update, replace, ...) the engine started, per resource name. */
export function steps(r: OpResult): Array<{ op: string; name: string; type: string; diffs: string[]; detailedDiff: any }> {
    return r.events
        .filter((e) => e.resourcePreEvent)
        .map((e) => {
            const m = e.resourcePreEvent!.metadata;
            return { op: m.op, name: m.urn.split("::").pop()!, type: m.type, diffs: m.diffs ?? [], detailedDiff: m.detailedDiff };
        });
}

/** The ops that change something (not "same", not reads), of the program's resources (no stack, no providers). */
export function changes(r: OpResult): string[] {
    return steps(r)
        .filter((s) => !["same", "read"].includes(s.op) && !/^pulumi:(pulumi:Stack|providers:)/.test(s.type))
        .map((s) => `${s.op} ${s.name}`);
}

/** Index in the event stream where a resource finished (its outputs event). */
export function finishedAt(r: OpResult, name: string): number {
    return r.events.findIndex((e) => e.resOutputsEvent?.metadata.urn.endsWith(`::${name}`));
}

/** Index where a resource's step started. */
export function startedAt(r: OpResult, name: string): number {
    return r.events.findIndex((e) => e.resourcePreEvent?.metadata.urn.endsWith(`::${name}`));
}

/** Network namespaces of test targets that exist now. */
export function testNamespaces(): string[] {
    return fs.existsSync("/run/netns") ? fs.readdirSync("/run/netns").filter((n) => n.startsWith("blogt-")) : [];
}

/** Pids of processes whose command line mentions `dir` (left behind by a stack). */
export function processesUnder(dir: string): number[] {
    const pids: number[] = [];
    for (const entry of fs.readdirSync("/proc")) {
        if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
        try {
            if (fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(dir)) pids.push(Number(entry));
        } catch {
            // gone already
        }
    }
    return pids;
}
