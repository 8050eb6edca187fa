// Behind Cloudflare's proxy with the real engine: the zone's SSL mode checked, then managed; the
// Origin CA certificate issued for the stack's key and delivered as host secrets; the switch to
// it and back, each step one `pulumi up` that the preview refuses when it would break the site.
import { execFileSync } from "child_process";
import { DOMAIN, E2eStack, ZONE_ID, changes, ok } from "./harness";

// Each operation runs the real CLI, which compiles the program and starts the providers.
jest.setTimeout(600_000);

const s = new E2eStack("proxied");

/** The Cloudflare records of the domain, as "TYPE proxied". */
function records(): string[] {
    const all = Object.values((s.cloud("cloudflare").records ?? {}) as Record<string, { name: string; type: string; proxied: boolean }>);
    return all.filter((r) => r.name === DOMAIN).map((r) => `${r.type} ${r.proxied}`).sort();
}

/** The certificate the server's web server presents now (PEM), asked through its IPv4 address. */
function presentedCertificate(ipv4: string): string {
    const out = execFileSync("sh", ["-c", `openssl s_client -connect ${ipv4}:443 -servername ${DOMAIN} </dev/null 2>/dev/null | openssl x509`], {
        encoding: "utf8",
        timeout: 30_000,
    });
    return out.trim();
}

/** The zone's SSL mode in the fake Cloudflare. */
function sslMode(): string | undefined {
    return s.cloud("cloudflare").zone_settings?.[ZONE_ID]?.ssl?.value;
}

beforeAll(() => s.init({ "blog:proxied": "true" }), 600_000);

afterAll(() => s.cleanup(), 120_000);

test("proxied records with a TTL other than 1 fail preview naming blog:ttl, and up creates nothing", async () => {
    // manageSslMode, so that nothing but the TTL stands in the way: Cloudflare would refuse the
    // records only after the server exists (the stand-in does, as the provider does).
    await s.setConfig({ "blog:ttl": "300", "blog:manageSslMode": "true" });
    const p = await s.preview();
    const u = await s.up();
    await s.removeConfig("blog:ttl");
    await s.removeConfig("blog:manageSslMode");
    for (const r of [p, u]) {
        expect(r.error).toBeDefined();
        expect(r.log).toContain('blog:ttl: got "300"; expected 1 (automatic) while blog:proxied is true');
    }
    expect(s.targetDirs()).toEqual([]);
    expect(s.cloud("hcloud").servers ?? {}).toEqual({});
    expect(records()).toEqual([]);
});

test("proxied records in a zone that is not Full (strict) fail preview, saying what to do; nothing is created", async () => {
    const p = await s.preview();
    expect(p.error).toBeDefined();
    expect(p.log).toContain(`the SSL mode of the Cloudflare zone ${DOMAIN.split(".").slice(1).join(".")}`);
    expect(p.log).toContain("pulumi config set manageSslMode true");
    expect(s.cloud("hcloud").servers ?? {}).toEqual({});
});

test("with manageSslMode the stack sets the zone to strict, warns that it is zone-wide, and serves Let's Encrypt behind the proxy first", async () => {
    await s.setConfig({ "blog:manageSslMode": "true" });
    const p = ok(await s.preview());
    expect(p.log).toContain("sets the SSL mode of the whole zone to Full (strict)");
    expect(p.log).toContain('set blog.host.tls = "cloudflare-origin"');
    const up = ok(await s.up());
    expect(sslMode()).toBe("strict");
    expect(records()).toEqual(["A true", "AAAA true"]);
    // The origin's addresses, which the proxy hides, appear nowhere in what the CLI printed (the
    // install's and the deploy's output included): they are secret outputs, and the scripts print
    // placeholders (HIDE_ADDRESSES).
    const { ipv4, ipv6 } = (await s.outputs()) as { ipv4: string; ipv6: string };
    expect(up.log).toContain("[origin IPv4]");
    expect(up.log).not.toContain(ipv4);
    expect(up.log).not.toContain(ipv6);
    expect((await s.stack.outputs()).ipv4.secret).toBe(true);
    // The Origin CA certificate is on the host, ready, while the site keeps its public one.
    const [dir] = s.targetDirs();
    const delivered = s.onTarget(dir, "cat /var/lib/blog-secrets/cloudflareOriginCert");
    expect(delivered).toContain("BEGIN CERTIFICATE");
    expect(s.onTarget(dir, "head -n 1 /var/lib/blog-secrets/cloudflareRealIp")).toMatch(/^set_real_ip_from [0-9a-f.:]+\/\d+;$/);
    expect(presentedCertificate((await s.outputs()).ipv4 as string)).not.toBe(delivered.trim());
});

test("tls cloudflare-origin: one up that only deploys (and drops the check after the records); the host serves the Origin CA certificate and passes the pinned health check", async () => {
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts({ tls: "cloudflare-origin" }) });
    const p = ok(await s.preview());
    // No ACME certificate to wait for behind the proxy: the check after the records goes.
    expect(changes(p).sort()).toEqual(["delete blog", "delete blog-check", "update blog-switch"]);
    ok(await s.up());
    const [dir] = s.targetDirs();
    const delivered = s.onTarget(dir, "cat /var/lib/blog-secrets/cloudflareOriginCert");
    expect(presentedCertificate((await s.outputs()).ipv4 as string)).toBe(delivered.trim());
});

test("leaving the proxy while the host serves the Origin CA certificate is refused at preview", async () => {
    await s.setConfig({ "blog:proxied": "false", "blog:manageSslMode": "false" });
    const p = await s.preview();
    expect(p.error).toBeDefined();
    expect(p.log).toContain('config.blog.host.tls: got "cloudflare-origin"; expected acme while blog:proxied is false');
    await s.setConfig({ "blog:proxied": "true", "blog:manageSslMode": "true" });
});

test("back: tls acme first (behind the proxy), then proxied false; destroy leaves the zone's SSL mode as it is", async () => {
    s.setConfiguration("blog", { ...s.configuration(), host: s.hostFacts({ tls: "acme" }) });
    ok(await s.up());
    await s.setConfig({ "blog:proxied": "false", "blog:manageSslMode": "false" });
    const r = ok(await s.up());
    expect(changes(r)).toEqual(expect.arrayContaining(["delete blog-origin-certificate", "update blog-switch"]));
    expect(records()).toEqual(["A false", "AAAA false"]);
    const [dir] = s.targetDirs();
    expect(s.onTarget(dir, "ls /var/lib/blog-secrets")).toBe("");
    ok(await s.destroy());
    expect(sslMode()).toBe("strict");
});
