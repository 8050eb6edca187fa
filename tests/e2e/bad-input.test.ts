// Bad input fails `pulumi preview` with the program's own message (key or fact, value, what was
// expected), and a failing `up` creates nothing at Hetzner: the real engine runs the program.
import { E2eStack, ZONE_ID, changes } from "./harness";

// Each operation runs the real CLI, which compiles the program and starts the providers.
jest.setTimeout(600_000);

const s = new E2eStack("bad");

beforeAll(() => s.init(), 600_000);

afterAll(() => s.cleanup(), 120_000);

test("a missing cloudflareZoneId is the program's message, with how to set it, not the CLI's", async () => {
    await s.removeConfig("blog:cloudflareZoneId");
    const r = await s.preview();
    await s.setConfig({ "blog:cloudflareZoneId": ZONE_ID });
    expect(r.error).toBeDefined();
    expect(r.log).toContain("blog:cloudflareZoneId: got nothing; expected a Cloudflare zone id");
    expect(r.log).toContain("`pulumi config set cloudflareZoneId <value>`");
    expect(r.log).not.toContain("missing configuration value");
});

test("a bad config value, and bad host facts, fail preview with the program's message", async () => {
    await s.setConfig({ "blog:ttl": "5" });
    const r = await s.preview();
    expect(r.error).toBeDefined();
    expect(r.log).toContain('blog:ttl: got "5"; expected 1 (automatic) or a whole number of seconds from 60 to 86400');
    await s.setConfig({ "blog:ttl": "1" });

    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts({ domain: "blog.example.org", adminSshKeys: [] }) });
    const facts = await s.preview();
    expect(facts.error).toBeDefined();
    expect(facts.log).toContain('config.blog.host.domain: got "blog.example.org"; expected your own domain');
    expect(facts.log).toContain("config.blog.host.adminSshKeys: got []; expected a non-empty list of OpenSSH public keys");
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts() });
});

test("what Hetzner and Cloudflare would refuse fails preview in one message, and up creates nothing at Hetzner", async () => {
    // An Arm type for the x86 configuration, at a location that does not offer it, for a domain outside the zone.
    await s.setConfig({ "blog:serverType": "cax11", "blog:location": "ash" });
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts({ domain: "blog.elsewhere.test" }) });
    const p = await s.preview();
    expect(p.error).toBeDefined();
    expect(p.log).toContain("The stack cannot place the host (nothing was created or changed):");
    expect(p.log).toContain('blog:serverType: got "cax11"; expected a server type of architecture x86');
    expect(p.log).toContain('blog:location: got "ash"; expected a location where cax11 is offered');
    expect(p.log).toContain('blog.host.domain: got "blog.elsewhere.test"; expected a name in the Cloudflare zone "e2e-site.test"');

    const u = await s.up();
    expect(u.error).toBeDefined();
    expect(changes(u).filter((c) => /server|firewall|bootstrap$|blog-a/.test(c))).toEqual([]);
    expect(s.targetDirs()).toEqual([]);
    expect(JSON.stringify(s.cloud("hcloud"))).not.toMatch(/firewall|server|ssh/i);
});
