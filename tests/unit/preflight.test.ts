import { labelValue, placementProblems, stackServer, zoneProblems } from "../../src/preflight";
import { SERVER_TYPES } from "./program";

// What the program concludes from Hetzner's and Cloudflare's answers; the stack tests show that
// the answers are asked for and that nothing is created before the checks pass.
const ZONE_ID = "0123456789abcdef0123456789abcdef";
const place = (a: Partial<Parameters<typeof placementProblems>[0]> = {}) =>
    placementProblems({ serverType: "cx23", location: "nbg1", system: "x86_64-linux", types: SERVER_TYPES, ...a }).map(String);

const withLocation = (name: string, loc: Record<string, unknown>) =>
    SERVER_TYPES.map((t) => (t.name === name ? { ...t, locations: t.locations.map((l) => ({ ...l, ...loc })) } : t));

describe("placementProblems", () => {
    test("accepts a type of the configuration's architecture offered at the location", () => {
        expect(place()).toEqual([]);
        expect(place({ serverType: "cax11", system: "aarch64-linux" })).toEqual([]);
        expect(place({ serverType: "cpx11", location: "ash" })).toEqual([]);
    });

    test("refuses a type Hetzner does not offer, listing those offered at the location", () => {
        expect(place({ serverType: "cx99" })).toEqual([
            'blog:serverType: got "cx99"; expected a server type Hetzner offers (at nbg1: cx23, cx33, cpx11, cax11)',
        ]);
    });

    test("refuses a type of the other architecture, both ways", () => {
        expect(place({ serverType: "cax11" })).toEqual([
            'blog:serverType: got "cax11"; expected a server type of architecture x86, as the configuration\'s system is x86_64-linux ' +
                "(cax11 is arm; x86 types: cx23, cx33, cpx11), or a configuration built for arm",
        ]);
        expect(place({ system: "aarch64-linux" })[0]).toContain("expected a server type of architecture arm");
    });

    test("refuses a location where the type is not offered, naming where it is", () => {
        expect(place({ location: "sin" })).toEqual([
            'blog:location: got "sin"; expected a location where cx23 is offered: nbg1, fsn1, hel1',
        ]);
    });

    test("refuses a type deprecated or unavailable at the location, unless the server already has it there", () => {
        const deprecated = withLocation("cx23", { isDeprecated: true, unavailableAfter: "2026-12-31T00:00:00Z" });
        expect(place({ types: deprecated })[0]).toContain(
            "expected a server type that is not deprecated at nbg1 (cx23 is, unavailable after 2026-12-31T00:00:00Z",
        );
        expect(place({ types: deprecated, current: { serverType: "cx23", location: "nbg1", primaryDiskSize: 40 } })).toEqual([]);
        const unavailable = withLocation("cx23", { available: false });
        expect(place({ types: unavailable })[0]).toContain("Hetzner reports cx23 temporarily unavailable there");
    });

    test("refuses too little memory for nixos-anywhere's installer", () => {
        const small = SERVER_TYPES.map((t) => (t.name === "cx23" ? { ...t, memory: 1 } : t));
        expect(place({ types: small })).toEqual([
            'blog:serverType: got "cx23"; expected a server type with at least 1.5 GB of memory for nixos-anywhere\'s installer (cx23 has 1 GB)',
        ]);
    });

    test("refuses a smaller disk than the server has: Hetzner cannot shrink it", () => {
        const current = { serverType: "cx33", location: "nbg1", primaryDiskSize: 80 };
        expect(place({ current })).toEqual([
            'blog:serverType: got "cx23"; expected a server type with a disk of at least 80 GB: the server\'s disk has 80 GB ' +
                "and Hetzner cannot shrink it (cx23 has 40 GB)",
        ]);
        expect(place({ serverType: "cx33", current })).toEqual([]);
        // Another architecture or location is a new server, with a new disk.
        expect(place({ serverType: "cax11", system: "aarch64-linux", current })).toEqual([]);
        expect(place({ location: "fsn1", current })).toEqual([]);
    });

    test("lists every problem of one placement at once", () => {
        expect(place({ serverType: "cax11", location: "ash" })).toHaveLength(2);
    });
});

describe("zoneProblems", () => {
    test.each(["example-site.org", "blog.example-site.org", "a.b.example-site.org"])("accepts %s in example-site.org", (domain) => {
        expect(zoneProblems(domain, "example-site.org", ZONE_ID)).toEqual([]);
    });

    test.each(["example-site.net", "blog.other.org", "notexample-site.org"])("refuses %s, naming the zone and what to change", (domain) => {
        expect(zoneProblems(domain, "example-site.org", ZONE_ID).map(String)).toEqual([
            `blog.host.domain: got ${JSON.stringify(domain)}; expected a name in the Cloudflare zone "example-site.org" ` +
                `(blog:cloudflareZoneId ${ZONE_ID}): change the domain in the host file or the zone id in the stack config`,
        ]);
    });
});

describe("labelValue", () => {
    const valid = /^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;

    test("keeps a value that is already a Hetzner label value", () => {
        expect(labelValue("blog.example-site.org")).toBe("blog.example-site.org");
        expect(labelValue("a".repeat(63))).toBe("a".repeat(63));
    });

    test.each([`${"a".repeat(60)}.example-site.org`, "a".repeat(64), "-dash-", "org/project", "a.b-"])(
        "shortens or cleans %s into a valid, distinct value",
        (value) => {
            const label = labelValue(value);
            expect(label).toMatch(valid);
            expect(label.length).toBeLessThanOrEqual(63);
            expect(labelValue(`${value}x`)).not.toBe(label);
        },
    );
});

describe("stackServer", () => {
    const server = (id: number, name: string, ipv4Address: string, location = "nbg1", serverType = "cx23") => ({
        id, name, serverType, location, ipv4Address, status: "running", primaryDiskSize: 40,
    });
    const wanted = { location: "nbg1", system: "x86_64-linux" as const };
    const pick = (servers: ReturnType<typeof server>[], w = wanted) => stackServer(servers, "managed-by=pulumi,stack=prod", w, SERVER_TYPES);

    test("one server, or none, is the stack's: no problem, no warning", () => {
        expect(pick([])).toEqual({ current: undefined, problems: [], warnings: [] });
        const one = server(1, "blog-server-a", "203.0.113.1");
        expect(pick([one])).toEqual({ current: one, problems: [], warnings: [] });
    });

    test("an unfinished replacement: the server that fits the configuration is judged, and the update is said to finish the move", () => {
        const old = server(7, "blog-server-a", "203.0.113.1", "nbg1");
        const moved = server(9, "blog-server-b", "203.0.113.2", "fsn1");
        const r = pick([old, moved], { location: "fsn1", system: "x86_64-linux" });
        expect(r.current).toBe(moved);
        expect(r.problems).toEqual([]);
        expect(r.warnings[0]).toContain("#7 blog-server-a (cx23 at nbg1, 203.0.113.1, running) and #9 blog-server-b (cx23 at fsn1, 203.0.113.2, running)");
        expect(r.warnings[0]).toContain("this update deletes it once the new one has passed its checks");
        // Back to the old location: the old one fits now.
        expect(pick([old, moved]).current).toBe(old);
    });

    test("of two that both fit (a failed --replace), the newer is judged", () => {
        const a = server(7, "blog-server-a", "203.0.113.1");
        const b = server(9, "blog-server-b", "203.0.113.2");
        expect(pick([b, a]).current).toBe(b);
        expect(pick([a, b]).current).toBe(b);
    });

    test("two of which neither fits, or more than two, are refused, naming them all and what to do", () => {
        const a = server(7, "blog-server-a", "203.0.113.1", "hel1");
        const b = server(9, "blog-server-b", "203.0.113.2", "fsn1");
        const [problem] = pick([a, b]).problems.map(String);
        expect(problem).toContain("the Hetzner servers with the labels managed-by=pulumi,stack=prod: got 2; expected one server");
        expect(problem).toContain("#7 blog-server-a (cx23 at hel1, 203.0.113.1, running)");
        expect(problem).toContain("#9 blog-server-b (cx23 at fsn1, 203.0.113.2, running)");
        expect(problem).toContain('"delete": true');
        expect(problem).toContain("hcloud server delete");
        expect(problem).toContain("pulumi refresh");
        // Another architecture than the configuration's does not fit either.
        const arm = server(9, "blog-server-b", "203.0.113.2", "nbg1", "cax11");
        expect(pick([server(7, "x", "203.0.113.1", "hel1"), arm]).problems).toHaveLength(1);
        const three = [server(1, "a", "203.0.113.1"), server(2, "b", "203.0.113.2"), server(3, "c", "203.0.113.3")];
        expect(pick(three).problems[0].toString()).toContain("got 3");
    });
});
