// Bad input fails `pulumi preview` with the program's own message (key or fact, value, what was
// expected), and a failing `up` creates nothing at Hetzner: the real engine runs the program.
import { execFileSync } from "child_process";
import { E2eStack, ZONE_ID, changes, newKeyPair } from "./harness";

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

/** The log with the engine's JSON escaping of quotes undone (an error inside a property's serialization is quoted). */
function plain(log: string): string {
    return log.replace(/\\"/g, '"');
}

/** The engine's log of a program that crashed shows its stack; the program's own refusals do not. */
function expectNoStackTrace(log: string): void {
    expect(log).not.toMatch(/^\s+at .+\(.+:\d+:\d+\)$/m);
    expect(log).not.toContain("unhandled");
}

test("a lookup that misses (a volume id, a zone id, a server type) is the program's message naming the key and value", async () => {
    // Back from the test above: a placement Hetzner offers, the host facts as they were.
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts({ dataVolume: true }) });
    await s.setConfig({ "blog:location": "nbg1", "blog:dataVolumeId": "424242", "blog:serverType": "cx999" });
    const volume = await s.preview();
    await s.removeConfig("blog:dataVolumeId");
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts() });
    await s.setConfig({ "blog:serverType": "cx23" });
    expect(volume.error).toBeDefined();
    // The hcloud stand-in answers a missing id as the provider's data source does
    // (terraform-provider-hcloud internal/volume/data_source.go: "no volume found with id %d").
    expect(plain(volume.log)).toContain(
        'blog:dataVolumeId: got "424242"; expected the id of a volume in the Hetzner project of hcloud:token (the lookup failed: no volume found with id 424242)',
    );
    expect(plain(volume.log)).toContain('blog:serverType: got "cx999"; expected a server type Hetzner offers');
    expectNoStackTrace(volume.log);

    const missingZone = "0123456789abcdef0123456789abcdef";
    await s.setConfig({ "blog:cloudflareZoneId": missingZone });
    const zone = await s.preview();
    await s.setConfig({ "blog:cloudflareZoneId": ZONE_ID });
    expect(zone.error).toBeDefined();
    // The cloudflare stand-in answers an unknown zone id as the API does (code 7003, "Could not
    // route to /client/v4/zones/<id>, perhaps your object identifier is invalid?"), which
    // terraform-provider-cloudflare's zone data source returns as its error.
    expect(plain(zone.log)).toContain(`blog:cloudflareZoneId: got "${missingZone}"; expected the id of a zone your Cloudflare token can read (the lookup failed:`);
    expect(zone.log).toContain("perhaps your object identifier is invalid");
    expectNoStackTrace(zone.log);
});

test("an admin key cut short (valid base64, 26 of ed25519's 32 key bytes) fails preview, named by its position", async () => {
    const blob = Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from("ssh-ed25519"), Buffer.from([0, 0, 0, 26]), Buffer.alloc(26, 7)]);
    const truncated = `ssh-ed25519 ${blob.toString("base64")} cut-short`;
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts({ adminSshKeys: [s.admin.publicKey, truncated] }) });
    const r = await s.preview();
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts() });
    expect(r.error).toBeDefined();
    expect(r.log).toContain(`config.blog.host.adminSshKeys[1]: got "${truncated}"; expected an OpenSSH public key line`);
    expect(r.log).toContain("an ed25519 key has exactly 32 key bytes; this one has 26");
});

test("admin keys that leave out the deploy's own login key fail preview, naming it and the safe order, unless confirmed", async () => {
    const other = newKeyPair(s.dir, "other").publicKey;
    const fingerprint = execFileSync("ssh-keygen", ["-lf", "-"], { input: s.admin.publicKey, encoding: "utf8" }).split(" ")[1];
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts({ adminSshKeys: [other] }) });
    const r = await s.preview();
    expect(r.error).toBeDefined();
    expect(r.log).toContain(`expected a list that keeps the key the deploy logs in with (blog:sshPrivateKey, ssh-ed25519 ${fingerprint})`);
    expect(r.log).toContain("add the new public key to adminSshKeys; set sshPrivateKey to the new private key");

    await s.setConfig({ "blog:allowRemovingLoginKey": fingerprint });
    const confirmed = await s.preview();
    await s.removeConfig("blog:allowRemovingLoginKey");
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts() });
    expect(confirmed.log).not.toContain("keeps the key the deploy logs in with");
    expect(confirmed.error).toBeUndefined();
});

test("wrongly typed values and an unknown key are one message of the program's, naming all three (Pulumi.yaml declares no types)", async () => {
    await s.setConfig({ "blog:proxied": "yes", "blog:ttl": "5m", "blog:serverTyp": "x" });
    const r = await s.preview();
    await s.removeConfig("blog:serverTyp");
    await s.setConfig({ "blog:proxied": "false", "blog:ttl": "1" });
    expect(r.error).toBeDefined();
    const message = plain(r.log);
    expect(message).toContain("Invalid stack configuration (fix with `pulumi config set <key> <value>`):");
    expect(message).toContain('blog:proxied: got "yes"; expected true or false');
    expect(message).toContain('blog:ttl: got "5m"; expected 1 (automatic) or a whole number of seconds from 60 to 86400');
    expect(message).toContain('blog:serverTyp: got "x"; expected no such stack key; did you mean serverType?');
    // Not the CLI's type check, which stops at the first key before the program runs.
    expect(message).not.toContain("must be of type");
});

test("a former name of a data-volume key is read, with a warning naming the new key", async () => {
    await s.setConfig({ "blog:deleteDataOnDestroy": "false" });
    const r = await s.preview();
    await s.removeConfig("blog:deleteDataOnDestroy");
    expect(r.error).toBeUndefined();
    expect(plain(r.log)).toContain("blog:deleteDataOnDestroy is now called blog:dataVolumeDeleteOnDestroy");
});
