// Replacements with the real engine, where a real run would trip: the image a replacement boots,
// a state written before the server had its replacementTrigger (the engine never replaces for a
// missing old trigger), a Hetzner record set replaced with the same name and type, and the two
// servers a replacement that failed half-way leaves (judged by which fits the configuration).
// One stack, one test after the other (dns: hetzner, so that the record sets are Hetzner's).
import { E2eStack, changes, ok, startedAt } from "./harness";

// Each operation runs the real CLI, which compiles the program and starts the providers.
jest.setTimeout(600_000);

const s = new E2eStack("replacement");

interface ServerRecord {
    id: number;
    name: string;
    image: string;
    server_type: string;
    location: string;
    labels: Record<string, string>;
}

/** The fake Hetzner's servers. */
function servers(): ServerRecord[] {
    return Object.values((s.cloud("hcloud").servers ?? {}) as Record<string, ServerRecord>);
}

/** The Hetzner record sets of the domain, as "TYPE value". */
function hetznerRecords(): string[] {
    const rrsets = Object.values((s.cloud("hcloud").rrsets ?? {}) as Record<string, { name: string; type: string; records: Array<{ value: string }> }>);
    return rrsets.filter((r) => r.name === "blog").flatMap((r) => r.records.map((v) => `${r.type} ${v.value}`)).sort();
}

/** Where in the event stream a step of `op` ("create-replacement", "delete-replaced", ...) on `name` finished. */
function finished(r: Awaited<ReturnType<typeof s.up>>, op: string, name: string): number {
    return r.events.findIndex((e) => e.resOutputsEvent?.metadata.op === op && e.resOutputsEvent.metadata.urn.endsWith(`::${name}`));
}

beforeAll(async () => {
    await s.init({ "blog:dns": "hetzner" });
    ok(await s.up());
}, 900_000);

afterAll(() => s.cleanup(), 120_000);

test("a new image alone changes nothing; a replacement for another reason boots the new image, no --replace needed", async () => {
    expect(servers().map((x) => x.image)).toEqual(["ubuntu-24.04"]);
    await s.setConfig({ "blog:image": "debian-12" });
    expect(changes(ok(await s.preview()))).toEqual([]);

    // A new location replaces the server; the engine checks the program's own values again for it,
    // the ignored image included.
    await s.setConfig({ "blog:location": "fsn1" });
    const r = ok(await s.up());
    expect(changes(r)).toEqual(expect.arrayContaining(["replace blog-server"]));
    expect(servers().map((x) => [x.location, x.image])).toEqual([["fsn1", "debian-12"]]);
});

test("a state written before the server's replacementTrigger: an architecture change still replaces the server", async () => {
    await s.editState((resources) => {
        const server = resources.find((r) => r.type === "hcloud:index/server:Server" && !r.delete)!;
        expect(server.replacementTrigger).toBe("x86_64-linux");
        delete server.replacementTrigger;
    });
    const before = servers();
    s.setConfiguration("blog-arm", { host: s.hostFacts({ system: "aarch64-linux" }), closure: "arm" });
    await s.setConfig({ "blog:serverType": "cax11", "blog:nixosConfiguration": "blog-arm" });

    const p = ok(await s.preview());
    expect(changes(p)).toEqual(expect.arrayContaining(["replace blog-server", "replace blog-nixos-anywhere"]));
    expect(changes(p)).not.toContain("update blog-server");

    ok(await s.up());
    const after = servers();
    expect(after.map((x) => x.server_type)).toEqual(["cax11"]);
    expect(after[0].id).not.toBe(before[0].id);
    expect((await s.outputs()).nixosConfiguration).toBe("blog-arm");
    // The state holds the trigger from now on.
    await s.editState((resources) => {
        expect(resources.find((r) => r.type === "hcloud:index/server:Server" && !r.delete)!.replacementTrigger).toBe("aarch64-linux");
    });
});

test("a Hetzner record set replaced with the same name and type is deleted first: Hetzner refuses two", async () => {
    const records = hetznerRecords();
    const urn = await s.urn("blog-a");
    const r = ok(await s.up({ replace: [urn] }));
    // Delete-before-replace: the old set goes, then the new one is created (the engine's steps in order).
    expect(changes(r)).toEqual(["delete-replaced blog-a", "replace blog-a", "create-replacement blog-a"]);
    const deleted = finished(r, "delete-replaced", "blog-a");
    const created = finished(r, "create-replacement", "blog-a");
    expect(deleted).toBeGreaterThanOrEqual(0);
    expect(created).toBeGreaterThan(deleted);
    expect(startedAt(r, "blog-a")).toBeLessThan(deleted);
    expect(hetznerRecords()).toEqual(records);
});

test("after a replacement that failed half-way, preview judges the server that fits, names both, and refuses two it cannot tell apart", async () => {
    // A deploy that cannot succeed (a system no store has), on a new server: the new server is
    // created and installed; the deploy fails, so the old one is never deleted.
    const elsewhere = servers()[0].location === "nbg1" ? "hel1" : "nbg1";
    await s.setConfig({
        "blog:location": elsewhere,
        "blog:systemClosure": "/nix/store/00000000000000000000000000000000-nixos-system-blog-missing",
    });
    const failed = await s.up();
    expect(failed.error).toBeDefined();
    const both = servers();
    expect(both).toHaveLength(2);
    expect(both.every((x) => x.labels.stack === "replacement")).toBe(true);

    // The configuration still names the new location: the new server is the one judged, and the
    // update would finish the move (no refusal), saying so with both servers named.
    const p = ok(await s.preview());
    expect(p.log).toContain("Two servers carry this stack's labels (managed-by=pulumi,project=blog,stack=replacement)");
    for (const x of both) expect(p.log).toContain(`#${x.id} ${x.name} (${x.server_type} at ${x.location}, `);
    expect(p.log).toContain("this update deletes it once the new one has passed its checks");

    // A third location fits neither: the checks cannot tell which is the stack's, so preview refuses.
    const third = ["nbg1", "hel1", "fsn1"].find((l) => !both.some((x) => x.location === l))!;
    await s.setConfig({ "blog:location": third });
    const refused = await s.preview();
    expect(refused.error).toBeDefined();
    expect(refused.log).toContain("The stack cannot place the host (nothing was created or changed):");
    expect(refused.log).toMatch(/the Hetzner servers with the labels managed-by=pulumi,project=blog,stack=replacement: got 2; expected one server/);
    for (const x of both) expect(refused.log).toContain(`#${x.id} ${x.name} (${x.server_type} at ${x.location}, `);
    expect(refused.log).toContain("hcloud server delete <id>");
});
