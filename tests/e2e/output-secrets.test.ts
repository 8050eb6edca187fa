// What the scripts print reaches the engine: pulumi-command streams a command's output into the
// engine's diagnostics as it runs, where `additionalSecretOutputs` does not reach
// (pulumi/pulumi-command#260; the stand-in streams it as the provider does, tests/e2e/providers/
// command.ts). Every script path of `up` and `destroy` runs here with every secret known: the
// install (host key, bootstrap key, login key), the data volume's attach and release, the deploy
// with host secrets, a deploy that fails its health check and rolls back, a new secret value, and
// destroy. None of them may appear in what the CLI prints at its default verbosity, in any engine
// event (the streamed lines, ephemeral ones included), or in the engine's log on stderr at the
// verbosity the rest of the suite checks (-v=2).
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as zlib from "zlib";
import { CLOUDFLARE_TOKEN, E2eStack, HCLOUD_TOKEN, OpResult, ok } from "./harness";

// Each operation runs the real CLI, which compiles the program and starts the providers.
jest.setTimeout(900_000);

const s = new E2eStack("output");
const API_KEY = `api-key-${crypto.randomBytes(16).toString("hex")}`;
// Two lines: the engine replaces a config secret's exact value with "[secret]" in its diagnostics
// (pulumi/pulumi v3.276.0 pkg/engine/events.go, logging.AddGlobalSecretFilter), but pulumi-command
// streams a command's output line by line, so a secret of several lines would not be masked.
const DB_PASSWORD = `db-password-${crypto.randomBytes(16).toString("hex")}\nsecond-line-${crypto.randomBytes(16).toString("hex")}\n`;
const DB_PASSWORD_2 = `db-password-two-${crypto.randomBytes(16).toString("hex")}`;
const ops: Array<{ name: string; result: OpResult }> = [];
/** The private keys the stack generated (host key, bootstrap key), read from its state while it has them. */
const generatedKeys = new Map<string, string>();

function captureGeneratedKeys(): void {
    for (const res of s.exportWithSecrets().deployment.resources ?? []) {
        if (res.type !== "tls:index/privateKey:PrivateKey") continue;
        const value = res.outputs?.privateKeyOpenssh;
        const plaintext = typeof value === "string" ? value : value?.plaintext && JSON.parse(value.plaintext);
        if (plaintext) generatedKeys.set(`${res.urn} privateKeyOpenssh`, plaintext);
    }
}

/** Runs an operation and keeps everything it printed and sent. */
async function record(name: string, run: Promise<OpResult>): Promise<OpResult> {
    const result = await run;
    ops.push({ name, result });
    return result;
}

/**
 * Every place the engine's output went: stdout and stderr, and each engine event as JSON, but the
 * Node.js SDK's own debug messages. Those carry each RegisterResource response, the generated
 * private keys in the clear among them (@pulumi/pulumi 3.276.0 runtime/resource.js: log.debug(
 * `RegisterResource RPC finished: ...; resp: ${innerResponse}`)); the CLI shows them only with
 * --debug or -v=3 and more (README, Secrets): the program cannot keep them out, and no script adds to them.
 */
function everything(r: OpResult): string {
    // (The Automation API's type leaves it out, but the engine sends debug diagnostics as severity "debug".)
    const events = r.events.filter((e) => (e.diagnosticEvent?.severity as string | undefined) !== "debug");
    return `${r.log}\n${events.map((e) => JSON.stringify(e)).join("\n")}`;
}

/** The CLI's automatic logs (3.249+: $PULUMI_HOME/logs), as their bytes, gunzipped where they are gzip. */
function automaticLogs(): Array<{ file: string; text: string }> {
    const dir = path.join(s.dir, "pulumi-home/logs");
    if (!fs.existsSync(dir)) return [];
    return fs.readdirSync(dir).map((name) => {
        const bytes = fs.readFileSync(path.join(dir, name));
        const gzip = bytes.length > 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
        return { file: name, text: (gzip ? zlib.gunzipSync(bytes) : bytes).toString("latin1") };
    });
}

/**
 * Distinctive pieces of a secret: for a PEM key, each base64 line after the first two (those start
 * alike in every OpenSSH ed25519 key, and hold its public half); otherwise each of its lines.
 */
function needles(value: string): string[] {
    if (value.startsWith("-----BEGIN")) {
        const lines = value.split("\n").filter((l) => l.length > 0 && !l.startsWith("-----"));
        return lines.slice(2).filter((l) => l.length >= 16);
    }
    return value.split("\n").filter((l) => l.length >= 12);
}

beforeAll(async () => {
    await s.init({ "blog:dataVolumeSize": "10" }, {}, { host: { dataVolume: true } });
    s.setConfiguration("blog", { ...s.configuration(), secrets: ["apiKey", "dbPassword"] });
    await s.setSecretAtPath("blog:hostSecrets.apiKey", API_KEY);
    await s.setSecretAtPath("blog:hostSecrets.dbPassword", DB_PASSWORD);
}, 600_000);

afterAll(() => s.cleanup(), 120_000);

test("every script path of up and destroy runs, each at the CLI's default verbosity, some at -v=2", async () => {
    // The install, the volume's attach, the deploy with two host secrets.
    ok(await record("up (install, attach, deploy with secrets)", s.up({ defaultVerbosity: true })));
    captureGeneratedKeys();
    // A system whose activation takes the site down: the deploy fails its health check and rolls back.
    s.setConfiguration("blog", { ...s.configuration(), closure: "v2-broken", healthy: false });
    const failed = await record("up (deploy fails, rolls back)", s.up({ defaultVerbosity: true }));
    expect(failed.error).toBeDefined();
    expect(failed.log).toMatch(/rolled back/);
    // The same failure again, with the engine's log on stderr.
    const verbose = await record("up (deploy fails, rolls back; -v=2)", s.up());
    expect(verbose.error).toBeDefined();
    // A good system and a new secret value: delivered, units restarted, committed.
    s.setConfiguration("blog", { ...s.configuration(), closure: "v3", healthy: true });
    await s.setSecretAtPath("blog:hostSecrets.dbPassword", DB_PASSWORD_2);
    ok(await record("up (new system, new secret)", s.up({ defaultVerbosity: true })));
    // Destroy releases the volume (its services stop, it is unmounted) before the detach.
    ok(await record("destroy (release, delete)", s.destroy({ defaultVerbosity: true })));
    expect(ops.map((o) => o.name)).toHaveLength(5);
});

test("no secret value and no private key is in anything the engine printed or sent", () => {
    const exported = s.exportWithSecrets();
    const secrets = new Map<string, string>([
        ["blog:sshPrivateKey", s.admin.privateKey],
        ["hcloud:token", HCLOUD_TOKEN],
        ["cloudflare:apiToken", CLOUDFLARE_TOKEN],
        ["hostSecrets.apiKey", API_KEY],
        ["hostSecrets.dbPassword", DB_PASSWORD],
        ["hostSecrets.dbPassword (changed)", DB_PASSWORD_2],
    ]);
    for (const [name, value] of generatedKeys) secrets.set(name, value);
    // The host key, the bootstrap login key and the bootstrap host key: the check is not empty.
    expect([...generatedKeys.keys()].map((urn) => urn.split("::").pop()?.replace(/ .*/, "")).sort()).toEqual(
        expect.arrayContaining([expect.stringMatching(/-host-key$/), expect.stringMatching(/-bootstrap-key$/), expect.stringMatching(/-bootstrap-host-key$/)]),
    );
    expect(generatedKeys.size).toBe(3);
    expect((exported.deployment.resources ?? []).filter((r) => !String(r.type).startsWith("pulumi:"))).toEqual([]);
    const leaks: string[] = [];
    for (const [name, value] of secrets) {
        for (const op of ops) {
            const text = everything(op.result);
            const n = needles(value).find((x) => text.includes(x));
            if (n !== undefined) {
                const line = text.split("\n").find((l) => l.includes(n)) ?? "";
                leaks.push(`${name} in ${op.name}: ${line.split(n).join("<SECRET>").slice(0, 300)}`);
            }
        }
    }
    // The CLI's automatic logs hold no secret in the clear either (they are encrypted with the stack's
    // secrets provider; a command without one writes gzip).
    const logs = automaticLogs();
    expect(logs.length).toBeGreaterThan(0);
    for (const [name, value] of secrets) {
        for (const log of logs) if (needles(value).some((n) => log.text.includes(n))) leaks.push(`${name} in the automatic log ${log.file}`);
    }
    expect(leaks).toEqual([]);
    // The scripts did print: the check reads their output.
    expect(ops.some((op) => everything(op.result).includes("Deployed: the host runs"))).toBe(true);
});
