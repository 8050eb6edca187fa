// Moving is a `pulumi up`: DNS from Hetzner's DNS to Cloudflare, then the host from a Hetzner
// server to a machine of your own, with the real engine deciding the order.
import { DOMAIN, E2eStack, changes, finishedAt, keyLine, ok, startedAt } from "./harness";

// Each operation runs the real CLI, which compiles the program and starts the providers.
jest.setTimeout(600_000);

const s = new E2eStack("moving");



/** The Hetzner record sets of the domain, as "TYPE value". */
function hetznerRecords(): string[] {
    const rrsets = Object.values((s.cloud("hcloud").rrsets ?? {}) as Record<string, { name: string; type: string; records: Array<{ value: string }> }>);
    return rrsets.filter((r) => r.name === "blog").flatMap((r) => r.records.map((v) => `${r.type} ${v.value}`)).sort();
}

/** The Cloudflare records of the domain, as "TYPE content". */
function cloudflareRecords(): string[] {
    const records = Object.values((s.cloud("cloudflare").records ?? {}) as Record<string, { name: string; type: string; content: string }>);
    return records.filter((r) => r.name === DOMAIN).map((r) => `${r.type} ${r.content}`).sort();
}

beforeAll(() => s.init({ "blog:dns": "hetzner" }), 600_000);

afterAll(() => s.cleanup(), 120_000);

test("dns: hetzner puts A and AAAA record sets in the Hetzner zone of the domain, named relative to it", async () => {
    ok(await s.up());
    const out = await s.outputs();
    expect(hetznerRecords()).toEqual([`A ${out.ipv4}`, `AAAA ${out.ipv6}`]);
    expect(cloudflareRecords()).toEqual([]);
});

test("to Cloudflare: the new records are created, the Hetzner ones deleted, the host untouched", async () => {
    const before = await s.outputs();
    await s.setConfig({ "blog:dns": "cloudflare" });
    const p = ok(await s.preview());
    expect(changes(p).sort()).toEqual(
        ["create blog", "create blog-a", "create blog-aaaa", "delete blog", "delete blog-a", "delete blog-aaaa"].sort(),
    );
    ok(await s.up());
    expect(cloudflareRecords()).toEqual([`A ${before.ipv4}`, `AAAA ${before.ipv6}`]);
    expect(hetznerRecords()).toEqual([]);
    expect((await s.outputs()).serverId).toBe(before.serverId);
});

test("to a machine of your own: it runs the system, then the records point at it, then it is checked, and only then the Hetzner server is deleted", async () => {
    const before = await s.outputs();
    const machine = s.startMachine();
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts({ platform: "generic" }) });
    await s.setConfig({
        "blog:host": "existing",
        "blog:hostIpv4": machine.TARGET_ADDR4,
        "blog:hostIpv6": machine.TARGET_ADDR6,
        "blog:hostKey": keyLine(machine.HOST_KEY),
    });
    const r = ok(await s.up());
    expect(cloudflareRecords()).toEqual([`A ${machine.TARGET_ADDR4}`, `AAAA ${machine.TARGET_ADDR6}`]);
    expect(s.onTarget(machine.TARGET_DIR, "readlink -e /run/current-system")).toBe(s.toplevel());
    const serverDeleted = r.events.findIndex(
        (e) => e.resOutputsEvent?.metadata.op === "delete" && e.resOutputsEvent.metadata.urn.endsWith("::blog-server"),
    );
    expect(serverDeleted).toBeGreaterThan(finishedAt(r, "blog-switch"));
    expect(finishedAt(r, "blog-switch")).toBeLessThan(startedAt(r, "blog-a"));
    expect(serverDeleted).toBeGreaterThan(finishedAt(r, "blog-check"));
    expect(s.targetDirs().map((d) => s.targetEnv(d).TARGET_ADDR4)).not.toContain(before.ipv4);
    expect(Object.keys(s.cloud("hcloud").servers ?? {})).toEqual([]);
});
