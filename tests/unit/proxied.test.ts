import { publicKeyPin } from "../../src/origin";
import { sslModeProblems } from "../../src/preflight";
import { CLOUDFLARE_RANGES, ORIGIN_CERT, ORIGIN_KEY, evaluation, runProgram } from "./program";

const PROXIED = { "blog:proxied": "true" };
const ORIGIN_TLS = { ...evaluation(), host: { ...evaluation().host, tls: "cloudflare-origin" } };

const deployEnv = (run: Awaited<ReturnType<typeof runProgram>>) =>
    run.all("command:local:Command").find((r) => r.name === "blog-switch")!.inputs.environment as Record<string, string>;

describe("proxied mode", () => {
    test("proxied records, and an Origin CA certificate for a key the stack generates, for the domain alone, for 15 years", async () => {
        const run = await runProgram({ config: PROXIED, evaluation: ORIGIN_TLS });
        expect(run.all("cloudflare:index/dnsRecord:DnsRecord").map((r) => r.inputs.proxied)).toEqual([true, true]);
        expect(run.one("tls:index/certRequest:CertRequest").inputs).toMatchObject({
            subject: { commonName: "blog.example-site.org" },
            dnsNames: ["blog.example-site.org"],
        });
        expect(run.one("cloudflare:index/originCaCertificate:OriginCaCertificate").inputs).toMatchObject({
            hostnames: ["blog.example-site.org"],
            requestType: "origin-ecc",
            requestedValidity: 5475,
        });
    });

    test("the deploy delivers the certificate, its key and Cloudflare's ranges as host secrets, and pins the key for the health check", async () => {
        const run = await runProgram({ config: PROXIED, evaluation: ORIGIN_TLS });
        const env = deployEnv(run);
        expect(env.HOST_SECRETS).toBe("cloudflareOriginCert cloudflareOriginKey cloudflareRealIp");
        expect(env.HOST_SECRET_cloudflareOriginCert).toBe(ORIGIN_CERT);
        expect(env.HOST_SECRET_cloudflareOriginKey).toBe(ORIGIN_KEY.privateKey);
        expect(env.HOST_SECRET_cloudflareRealIp).toBe(
            [...CLOUDFLARE_RANGES.ipv4Cidrs, ...CLOUDFLARE_RANGES.ipv6Cidrs].map((c) => `set_real_ip_from ${c};\n`).join(""),
        );
        expect(env.HEALTH_PINNED_KEY).toBe(publicKeyPin(ORIGIN_KEY.publicKey));
        expect(env.HEALTH_PINNED_KEY).toMatch(/^sha256\/\/[A-Za-z0-9+/]{43}=$/);
    });

    test("with the host still on Let's Encrypt, the certificate is delivered ready, no pin, and the plan says what comes next", async () => {
        const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
        const run = await runProgram({ config: PROXIED });
        expect(deployEnv(run).HOST_SECRETS).toBe("cloudflareOriginCert cloudflareOriginKey cloudflareRealIp");
        expect(deployEnv(run).HEALTH_PINNED_KEY).toBeUndefined();
        expect(warn.mock.calls.map((c) => String(c[0]))).toContainEqual(expect.stringContaining('set blog.host.tls = "cloudflare-origin"'));
        warn.mockRestore();
    });

    test("an Origin CA certificate on a host visitors reach directly is refused", async () => {
        await expect(runProgram({ evaluation: ORIGIN_TLS })).rejects.toThrow(
            'config.blog.host.tls: got "cloudflare-origin"; expected acme while blog:proxied is false',
        );
    });

    test("a zone whose SSL mode is not Full (strict) is refused, saying how to fix it; manageSslMode sets it instead, kept on destroy", async () => {
        expect(sslModeProblems("full", "example-site.org").map(String)).toEqual([
            'the SSL mode of the Cloudflare zone example-site.org: got "Full"; expected Full (strict) for proxied records, so that ' +
                "Cloudflare checks the origin's certificate: set it in the dashboard (SSL/TLS > Overview; it applies to every proxied " +
                "record of the zone), or let the stack set it with `pulumi config set manageSslMode true`",
        ]);
        expect(sslModeProblems("strict", "example-site.org")).toEqual([]);
        const checked = await runProgram({ config: PROXIED });
        expect(checked.invokes.find((i) => i.token === "cloudflare:index/getZoneSetting:getZoneSetting")!.inputs).toEqual({
            zoneId: "0123456789abcdef0123456789abcdef",
            settingId: "ssl",
        });
        const managed = await runProgram({ config: { ...PROXIED, "blog:manageSslMode": "true" }, sslMode: "full" });
        const setting = managed.one("cloudflare:index/zoneSetting:ZoneSetting");
        expect(setting.inputs).toMatchObject({ settingId: "ssl", value: "strict" });
        expect(setting.opts.retainOnDelete).toBe(true);
        expect(managed.invokes.map((i) => i.token)).not.toContain("cloudflare:index/getZoneSetting:getZoneSetting");
    });

    test("httpFromCloudflareOnly admits HTTP and HTTPS from Cloudflare's ranges only; SSH and ICMP stay open", async () => {
        const run = await runProgram({ config: { ...PROXIED, "blog:httpFromCloudflareOnly": "true" } });
        const rules = run.one("hcloud:index/firewall:Firewall").inputs.rules as Array<{ port?: string; sourceIps: string[] }>;
        const ranges = [...CLOUDFLARE_RANGES.ipv4Cidrs, ...CLOUDFLARE_RANGES.ipv6Cidrs];
        expect(rules.map((r) => [r.port ?? "icmp", r.sourceIps])).toEqual([
            ["22", ["0.0.0.0/0", "::/0"]],
            ["80", ranges],
            ["443", ranges],
            ["icmp", ["0.0.0.0/0", "::/0"]],
        ]);
        // Nobody but Cloudflare reaches the origin's web ports: the deploy checks the site over its SSH connection.
        expect(deployEnv(run).HEALTH_VIA).toBe("ssh");
        expect(deployEnv(await runProgram({ config: PROXIED })).HEALTH_VIA).toBeUndefined();
    });

    test("unproxied stacks create nothing at Cloudflare but the records", async () => {
        const run = await runProgram();
        expect(run.resources.map((r) => r.type).filter((t) => t.startsWith("cloudflare:"))).toEqual([
            "cloudflare:index/dnsRecord:DnsRecord",
            "cloudflare:index/dnsRecord:DnsRecord",
        ]);
    });
});

describe("the origin's addresses behind the proxy", () => {
    const commands = (run: Awaited<ReturnType<typeof runProgram>>) =>
        run.all("command:local:Command").filter((c) => ["blog-switch", "blog-nixos-anywhere"].includes(c.name));

    test("proxied: the commands print placeholders (HIDE_ADDRESSES), the server's addresses and the stack's outputs are secret", async () => {
        const run = await runProgram({ config: PROXIED });
        expect(commands(run)).toHaveLength(2);
        for (const c of commands(run)) expect((c.inputs.environment as Record<string, string>).HIDE_ADDRESSES).toBe("1");
        expect(run.one("hcloud:index/server:Server").opts.additionalSecretOutputs).toEqual(["ipv4Address", "ipv6Address", "ipv6Network"]);
        expect(await run.pulumi.isSecret(run.outputs.ipv4 as never)).toBe(true);
        expect(await run.pulumi.isSecret(run.outputs.ipv6 as never)).toBe(true);
    });

    test("not proxied: the addresses are plain and the commands print them", async () => {
        const run = await runProgram();
        for (const c of commands(run)) expect((c.inputs.environment as Record<string, string>).HIDE_ADDRESSES).toBeUndefined();
        expect(run.one("hcloud:index/server:Server").opts.additionalSecretOutputs).toEqual([]);
        expect(await run.pulumi.isSecret(run.outputs.ipv4 as never)).toBe(false);
    });
});
