// The stack's life with the real engine: preview, up, up again, a new system, key and server
// changes, destroy. One stack, one test after the other, as a user would run them.
import * as path from "path";
import { ageRecipient } from "../../src/keys";
import {
    CLOUDFLARE_TOKEN,
    DOMAIN,
    E2eStack,
    HCLOUD_TOKEN,
    OpResult,
    changes,
    finishedAt,
    newKeyPair,
    processesUnder,
    startedAt,
    ok,
    steps,
    testNamespaces,
} from "./harness";

// Each operation runs the real CLI, which compiles the program and starts the providers.
jest.setTimeout(600_000);

const s = new E2eStack("e2e");
/** Every operation's log, and the state file as it was after it. */
const ops: Array<{ name: string; result: OpResult; state: string }> = [];

async function record(name: string, run: Promise<OpResult>): Promise<OpResult> {
    const result = await run;
    let state = "";
    try {
        state = s.stateText();
    } catch {
        // no state file before the first update
    }
    ops.push({ name, result, state });
    return result;
}



function currentSystem(ipv4: string): string {
    return s.onTarget(s.targetAt(ipv4), "readlink -e /run/current-system || true");
}

beforeAll(() => s.init(), 600_000);

afterAll(() => s.cleanup(), 120_000);

test("preview of a new stack lists every resource, runs no command and opens no SSH connection", async () => {
    const r = ok(await record("preview (new stack)", s.preview()));
    expect(changes(r).sort()).toEqual(
        [
            "create blog",
            "create blog",
            "create blog",
            "create blog",
            "create blog",
            "create blog-a",
            "create blog-aaaa",
            "create blog-bootstrap",
            "create blog-bootstrap-host-key",
            "create blog-bootstrap-key",
            "create blog-firewall",
            "create blog-host-key",
            "create blog-nixos-anywhere",
            "create blog-server",
            "create blog-switch",
            "create blog-check",
        ].sort(),
    );
    expect(s.installs()).toEqual([]);
    expect(s.targetDirs()).toEqual([]); // no server exists, so nothing could be logged in to
    expect(s.sshLogins()).toBe(0);
});

test("up creates the server, installs it, deploys and checks it, then DNS, then the check again; sets every output; the host runs the evaluated system", async () => {
    const r = ok(await record("up (new stack)", s.up()));
    expect(finishedAt(r, "blog-server")).toBeLessThan(startedAt(r, "blog-nixos-anywhere"));
    expect(finishedAt(r, "blog-nixos-anywhere")).toBeLessThan(startedAt(r, "blog-switch"));
    for (const record of ["blog-a", "blog-aaaa"]) {
        expect(finishedAt(r, "blog-switch")).toBeLessThan(startedAt(r, record));
        expect(finishedAt(r, record)).toBeLessThan(startedAt(r, "blog-check"));
    }

    const out = await s.outputs();
    expect(out).toEqual({
        ipv4: expect.stringMatching(/^198\.18\.\d+\.2$/),
        ipv6: expect.stringMatching(/^fd42:b10b:\d+::2$/),
        url: `https://${DOMAIN}/`,
        serverId: expect.stringMatching(/^\d+$/),
        hostKey: expect.stringMatching(/^ssh-ed25519 AAAA\S+$/),
        hostAgeKey: expect.stringMatching(/^age1[02-9ac-hj-np-z]{58}$/),
        systemClosure: s.toplevel(),
        nixosConfiguration: "blog",
        dataVolume: null,
        backup: null,
        backupPassword: null,
        dnsRecords: [
            { type: "A", name: DOMAIN, content: expect.any(String), managedBy: "cloudflare" },
            { type: "AAAA", name: DOMAIN, content: expect.any(String), managedBy: "cloudflare" },
        ],
    });
    const target = s.targetAt(out.ipv4 as string);
    expect(currentSystem(out.ipv4 as string)).toBe(out.systemClosure);
    // The installed host presents the key the stack generated, and nothing else.
    expect(s.presentedHostKey(target)).toBe(out.hostKey);
    expect(out.hostAgeKey).toBe(ageRecipient(out.hostKey as string));
    expect(s.installs()).toHaveLength(1);
    const records = JSON.stringify(s.cloud("cloudflare"));
    expect(records).toContain(out.ipv4 as string);
    expect(records).toContain(out.ipv6 as string);
});

test("up again with nothing changed: no change, no command runs, no SSH connection", async () => {
    const logins = s.sshLogins();
    const r = ok(await record("up (unchanged)", s.up()));
    expect(changes(r)).toEqual([]);
    expect(s.sshLogins()).toBe(logins);
    expect(s.installs()).toHaveLength(1);
});

test("a new system: preview shows the deploy as an in-place update with the old and the new store path; up deploys it", async () => {
    const before = (await s.outputs()).systemClosure as string;
    s.setConfiguration("blog", { ...s.configuration(), closure: "v2" });
    const after = s.toplevel();
    expect(after).not.toBe(before);

    const p = ok(await record("preview (new system)", s.preview()));
    expect(changes(p)).toEqual(["update blog-switch", "update blog-check"]);
    const deploy = steps(p).find((x) => x.name === "blog-switch")!;
    expect(deploy.diffs).toEqual(["environment"]);
    // The diff names the store paths, although the environment also holds a secret.
    expect(p.log).toMatch(new RegExp(`SYSTEM_CLOSURE\\s*:\\s*"${before}"\\s*=>\\s*"${after}"`));

    const u = ok(await record("up (new system)", s.up()));
    expect(changes(u)).toEqual(["update blog-switch", "update blog-check"]);
    const out = await s.outputs();
    expect(out.systemClosure).toBe(after);
    expect(currentSystem(out.ipv4 as string)).toBe(after);
});

test("admin keys added, then one removed from the middle: each is one up that only deploys (and checks); Hetzner is not touched", async () => {
    const k1 = newKeyPair(s.dir, "k1").publicKey;
    const k2 = newKeyPair(s.dir, "k2").publicKey;
    const hetznerBefore = JSON.stringify(s.cloud("hcloud"));
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts({ adminSshKeys: [s.admin.publicKey, k1, k2] }) });
    const added = ok(await record("up (keys added)", s.up()));
    expect(changes(added)).toEqual(["update blog-switch", "update blog-check"]);

    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts({ adminSshKeys: [s.admin.publicKey, k2] }) });
    const removed = ok(await record("up (middle key removed)", s.up()));
    expect(changes(removed)).toEqual(["update blog-switch", "update blog-check"]);
    expect(currentSystem((await s.outputs()).ipv4 as string)).toBe(s.toplevel());
    expect(JSON.stringify(s.cloud("hcloud"))).toBe(hetznerBefore);
});

test("a bigger server type resizes the server in place; a smaller disk than it now has fails at preview", async () => {
    const id = (await s.outputs()).serverId;
    await s.setConfig({ "blog:serverType": "cx33" });
    const grow = ok(await record("up (cx23 -> cx33)", s.up()));
    expect(changes(grow)).toEqual(["update blog-server"]);
    expect((await s.outputs()).serverId).toBe(id);

    await s.setConfig({ "blog:serverType": "cx23" });
    const shrink = await record("preview (cx33 -> cx23)", s.preview());
    expect(shrink.error).toBeDefined();
    expect(shrink.log).toContain(
        'blog:serverType: got "cx23"; expected a server type with a disk of at least 80 GB: the server\'s disk has 80 GB and Hetzner cannot shrink it',
    );
    await s.setConfig({ "blog:serverType": "cx33" });
});

test("a new location replaces the server: the new one is created, installed, deployed, pointed at and checked before the old one goes", async () => {
    const before = await s.outputs();
    await s.setConfig({ "blog:location": "fsn1" });
    const p = ok(await record("preview (new location)", s.preview()));
    expect(changes(p)).toEqual(expect.arrayContaining(["replace blog-server", "replace blog-nixos-anywhere"]));

    const r = ok(await record("up (new location)", s.up()));
    const after = await s.outputs();
    expect(after.serverId).not.toBe(before.serverId);
    expect(after.ipv4).not.toBe(before.ipv4);
    expect(after.hostKey).toBe(before.hostKey);
    const createdNew = r.events.findIndex(
        (e) => e.resOutputsEvent?.metadata.op === "create-replacement" && e.resOutputsEvent.metadata.urn.endsWith("::blog-server"),
    );
    const deletedOld = r.events.findIndex(
        (e) => e.resOutputsEvent?.metadata.op === "delete-replaced" && e.resOutputsEvent.metadata.urn.endsWith("::blog-server"),
    );
    expect(createdNew).toBeGreaterThanOrEqual(0);
    expect(finishedAt(r, "blog-a")).toBeGreaterThan(createdNew);
    expect(finishedAt(r, "blog-switch")).toBeLessThan(startedAt(r, "blog-a"));
    expect(finishedAt(r, "blog-check")).toBeLessThan(deletedOld);
    expect(s.installs()).toHaveLength(2);
    expect(currentSystem(after.ipv4 as string)).toBe(s.toplevel());
    expect(s.targetDirs().filter((d) => s.targetEnv(d).TARGET_ADDR4 === before.ipv4)).toEqual([]);
    expect(JSON.stringify(s.cloud("cloudflare"))).not.toContain(`"${before.ipv4}"`);
});

test("another architecture is a new server, shown as a replace in preview, installed with the Arm configuration", async () => {
    const before = await s.outputs();
    s.setConfiguration("blog-arm", { host: s.hostFacts({ system: "aarch64-linux" }), closure: "arm" });
    await s.setConfig({ "blog:serverType": "cax11", "blog:nixosConfiguration": "blog-arm" });
    const p = ok(await record("preview (x86 -> arm)", s.preview()));
    expect(changes(p)).toEqual(expect.arrayContaining(["replace blog-server", "replace blog-nixos-anywhere"]));

    ok(await record("up (x86 -> arm)", s.up()));
    const after = await s.outputs();
    expect(after.serverId).not.toBe(before.serverId);
    expect(after.nixosConfiguration).toBe("blog-arm");
    expect(currentSystem(after.ipv4 as string)).toBe(s.toplevel("blog-arm"));
    expect(s.installs().pop()).toContain("--flake ./nix#blog-arm");
});

test("a new bootstrap host key (new user data) replaces no server: Hetzner would replace it, the program ignores the change", async () => {
    const key = "urn:pulumi:e2e::blog::blog:hetzner:Server$tls:index/privateKey:PrivateKey::blog-bootstrap-host-key";
    const events: OpResult["events"] = [];
    await s.stack.preview({ replace: [key], onEvent: (e) => events.push(e), color: "never" });
    const planned = changes({ log: "", events });
    expect(planned).toContain("replace blog-bootstrap-host-key");
    expect(planned.filter((c) => c.endsWith(" blog-server"))).toEqual([]);
});

test("no secret is in the clear in the state file or in the engine's verbose log, after any step", () => {
    const exported = s.exportWithSecrets();
    const secrets = new Map<string, string>([
        ["blog:sshPrivateKey", s.admin.privateKey],
        ["hcloud:token", HCLOUD_TOKEN],
        ["cloudflare:apiToken", CLOUDFLARE_TOKEN],
    ]);
    for (const res of exported.deployment.resources ?? []) {
        if (res.type !== "tls:index/privateKey:PrivateKey") continue;
        const value = res.outputs?.privateKeyOpenssh;
        const plaintext = typeof value === "string" ? value : value?.plaintext && JSON.parse(value.plaintext);
        if (plaintext) secrets.set(`${res.urn} privateKeyOpenssh`, plaintext);
    }
    // The three tls keys are there (host key, bootstrap login key, bootstrap host key, which the
    // server's user data also carries), so the check is not empty.
    expect(secrets.size).toBe(6);
    // A distinctive piece of each: for a PEM key, its longest base64 line.
    const needles = [...secrets].map(([name, value]) => {
        const lines = value.split("\n").filter((l) => !l.startsWith("-----"));
        return [name, lines.sort((a, b) => b.length - a.length)[0] ?? value] as const;
    });
    // Each leak names the secret, where, and the line it is on (the secret itself masked).
    const where = (text: string, needle: string) => {
        const line = text.split("\n").find((l) => l.includes(needle)) ?? "";
        return line.split(needle).join("<SECRET>").slice(0, 300);
    };
    const leaks: string[] = [];
    for (const [name, needle] of needles) {
        for (const op of ops) {
            if (op.result.log.includes(needle)) leaks.push(`${name} in the log of ${op.name}: ${where(op.result.log, needle)}`);
            if (op.state.includes(needle)) leaks.push(`${name} in the state file after ${op.name}: ${where(op.state, needle)}`);
        }
    }
    expect(ops.length).toBeGreaterThanOrEqual(10);
    expect(leaks).toEqual([]);
});

test("destroy removes every resource and record, stops the server, and leaves no process or namespace behind", async () => {
    const namespaces = s.targetDirs().map((d) => s.targetEnv(d).NETNS);
    ok(await record("destroy", s.destroy()));
    const exported = s.exportWithSecrets();
    expect((exported.deployment.resources ?? []).filter((r) => !String(r.type).startsWith("pulumi:"))).toEqual([]);
    expect(s.targetDirs()).toEqual([]);
    for (const ns of namespaces) expect(testNamespaces()).not.toContain(ns);
    expect(processesUnder(s.cloudDir)).toEqual([]);
    expect(JSON.stringify(s.cloud("cloudflare"))).not.toContain(DOMAIN);
    expect(path.isAbsolute(s.cloudDir)).toBe(true);
});
