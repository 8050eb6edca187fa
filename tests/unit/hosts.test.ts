// Where the host comes from (a new Hetzner server, or a machine you have) and where its records
// live (Cloudflare, Hetzner's DNS, nowhere): the graph the program declares for each combination.
import * as pulumi from "@pulumi/pulumi";
import { readStackConfig } from "../../src/config";
import { checkEvaluation } from "../../src/host";
import { ADMIN_KEY, SSH_PRIVATE_KEY, ZONE_ID, evaluation, runProgram, valueOf } from "./program";

const COMMAND = "command:local:Command";
const EXISTING_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP+Fc01H7ObcW+wOLAslS6VbRK2g3hgLgwNdImAFHu45 root@box";
const installing = { "blog:install": "true", "blog:wipeDiskOf": "203.0.113.7", "blog:installHostKey": EXISTING_KEY };
const existing = { "blog:host": "existing", "blog:hostIpv4": "203.0.113.7", "blog:hostIpv6": "2001:db8::7" };
const secret = { config: { "blog:sshPrivateKey": SSH_PRIVATE_KEY }, secretKeys: ["blog:sshPrivateKey"] };

const types = (run: Awaited<ReturnType<typeof runProgram>>) => run.resources.map((r) => r.type).filter((t) => !t.startsWith("pulumi:")).sort();
const command = (run: Awaited<ReturnType<typeof runProgram>>, suffix: string) => run.all(COMMAND).find((c) => c.name.endsWith(suffix));

describe("an existing machine with its host key", () => {
    let run: Awaited<ReturnType<typeof runProgram>>;
    beforeAll(async () => {
        run = await runProgram({
            config: { ...existing, "blog:hostKey": EXISTING_KEY, "blog:sshPort": "2222", ...secret.config },
            secretKeys: secret.secretKeys,
            evaluation: evaluation({ platform: "generic" }),
        });
    });

    test("creates nothing at Hetzner and installs nothing: the deploy, DNS and the check after it only", () => {
        expect(types(run)).toEqual(
            ["blog:cloudflare:Dns", "blog:nixos:Check", "blog:nixos:Deploy", COMMAND, COMMAND, "cloudflare:index/dnsRecord:DnsRecord", "cloudflare:index/dnsRecord:DnsRecord"].sort(),
        );
        expect(run.invokes.map((i) => i.token)).toEqual(["cloudflare:index/getZone:getZone"]);
    });

    test("the deploy connects to the configured address and port and trusts only the configured host key", () => {
        expect(command(run, "switch")!.inputs.environment).toMatchObject({
            TARGET_HOST: "203.0.113.7",
            TARGET_PORT: "2222",
            HOST_KEY: EXISTING_KEY.split(" ").slice(0, 2).join(" "),
            PUBLISHED_ADDRESSES: "203.0.113.7 2001:db8::7",
        });
    });

    test("the records point at its addresses, and the outputs say there is no Hetzner server", async () => {
        expect(run.all("cloudflare:index/dnsRecord:DnsRecord").map((r) => `${r.inputs.type} ${r.inputs.content}`).sort()).toEqual([
            "A 203.0.113.7",
            "AAAA 2001:db8::7",
        ]);
        expect(await valueOf(run.outputs.serverId)).toBeNull();
        expect(await valueOf(run.outputs.hostKey)).toBe(EXISTING_KEY.split(" ").slice(0, 2).join(" "));
    });
});

describe("an existing machine that the stack installs", () => {
    test("runs nixos-anywhere with the admin key, reinstalling only for another address, and warns that it erases the disk", async () => {
        const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
        const run = await runProgram({
            config: { ...existing, ...installing, ...secret.config },
            secretKeys: secret.secretKeys,
            evaluation: evaluation({ platform: "generic", disk: "/dev/disk/by-id/nvme-Samsung_SSD_980_S1" }),
        });
        const install = command(run, "nixos-anywhere")!;
        expect(install.inputs.triggers).toEqual(["203.0.113.7"]);
        expect(install.inputs.environment).toMatchObject({ TARGET_HOST: "203.0.113.7", TARGET_PORT: "22" });
        expect(install.inputs.environment.BOOTSTRAP_SSH_PRIVATE_KEY).toBeUndefined();
        // The first connection is strict against the key the machine presents now, given in config.
        expect(install.inputs.environment.BOOTSTRAP_HOST_KEY).toBe(EXISTING_KEY.split(" ").slice(0, 2).join(" "));
        expect(run.all("hcloud:index/server:Server")).toEqual([]);
        expect(warn.mock.calls.map((c) => String(c[0]))).toContainEqual(expect.stringContaining("ERASES THE DISK of 203.0.113.7"));
        warn.mockRestore();
    });
});

describe("DNS at Hetzner, or nowhere", () => {
    test("hetzner: A and AAAA record sets in the zone that holds the domain, named relative to it", async () => {
        const run = await runProgram({ config: { "blog:dns": "hetzner" }, hetznerZones: ["example-site.org", "other.org"] });
        const rrsets = run.all("hcloud:index/zoneRrset:ZoneRrset").map((r) => r.inputs);
        expect(rrsets).toEqual([
            expect.objectContaining({ zone: "example-site.org", name: "blog", type: "A", records: [expect.objectContaining({ value: "203.0.113.10" })] }),
            expect.objectContaining({ zone: "example-site.org", name: "blog", type: "AAAA" }),
        ]);
        expect(run.all("cloudflare:index/dnsRecord:DnsRecord")).toEqual([]);
        expect(run.invokes.map((i) => i.token)).not.toContain("cloudflare:index/getZone:getZone");
        // Hetzner holds one set per name and type: a replacement deletes the old one first.
        expect(run.all("hcloud:index/zoneRrset:ZoneRrset").map((r) => r.opts.deleteBeforeReplace)).toEqual([true, true]);
    });

    test("none: no record anywhere; the dnsRecords output lists what to create", async () => {
        const run = await runProgram({
            config: { ...existing, "blog:hostKey": EXISTING_KEY, "blog:dns": "none" },
            evaluation: evaluation({ platform: "generic" }),
        });
        expect(types(run)).toEqual(["blog:nixos:Deploy", COMMAND]);
        expect(run.invokes).toEqual([]);
        expect(await valueOf(run.outputs.dnsRecords)).toEqual([
            { type: "A", name: "blog.example-site.org", content: "203.0.113.7", managedBy: "you" },
            { type: "AAAA", name: "blog.example-site.org", content: "2001:db8::7", managedBy: "you" },
        ]);
    });

    test("an IPv6-only machine gets an AAAA record only, and is connected to by its IPv6 address", async () => {
        const run = await runProgram({
            config: { "blog:host": "existing", "blog:hostIpv6": "2001:db8::7", "blog:hostKey": EXISTING_KEY, "blog:dns": "none" },
            evaluation: evaluation({ platform: "generic" }),
        });
        expect(((await valueOf(run.outputs.dnsRecords)) as Array<{ type: string }>).map((r) => r.type)).toEqual(["AAAA"]);
        expect(command(run, "switch")!.inputs.environment).toMatchObject({
            TARGET_HOST: "2001:db8::7",
            PUBLISHED_ADDRESSES: "2001:db8::7",
        });
    });
});

// Refusals are thrown before any resource: tested on the functions that throw them (a program
// run that throws leaves the mocks' stack half-registered for the next test).
describe("refusals at preview", () => {
    function problem(config: Record<string, string>, host: Parameters<typeof evaluation>[0] = { platform: "generic" }): string {
        pulumi.runtime.setAllConfig({ "blog:cloudflareZoneId": ZONE_ID, ...config }, []);
        try {
            checkEvaluation(evaluation(host), readStackConfig(new pulumi.Config("blog")));
        } catch (err) {
            return (err as Error).message;
        }
        throw new Error(`accepted ${JSON.stringify(config)}`);
    }

    test("an existing machine with neither a host key nor install: true", () => {
        expect(problem(existing)).toContain(
            "blog:hostKey: got nothing; expected the machine's SSH host key (`pulumi config set hostKey \"$(ssh-keyscan -t ed25519 203.0.113.7 | cut -d' ' -f2-)\"\`",
        );
    });

    test("an address that is not one, and a host key line that is not one", () => {
        const message = problem({ "blog:host": "existing", "blog:hostIpv4": "my-box.local", "blog:hostKey": "ssh-ed25519 nope" });
        expect(message).toContain('blog:hostIpv4: got "my-box.local"; expected an IPv4 address such as 203.0.113.7');
        expect(message).toContain('blog:hostKey: got "ssh-ed25519 nope"; expected the machine\'s SSH host key line');
    });

    test("install: true without the machine's current host key (never trusted on first use), or that key without install", () => {
        expect(problem({ ...existing, "blog:install": "true", "blog:wipeDiskOf": "203.0.113.7" })).toContain(
            "blog:installHostKey: got nothing; expected the host key the machine presents now, before the install, read out of band",
        );
        expect(problem({ ...existing, "blog:hostKey": EXISTING_KEY, "blog:installHostKey": EXISTING_KEY })).toContain(
            `blog:installHostKey: got "${EXISTING_KEY}"; expected unset: it is the key an install pins, and install is false`,
        );
    });

    test("install: true without the confirmation, or with another address", () => {
        expect(problem({ ...existing, "blog:install": "true" })).toContain(
            'blog:wipeDiskOf: got nothing; expected "203.0.113.7", the machine\'s address again, to confirm that nixos-anywhere erases its disk',
        );
        expect(problem({ ...existing, "blog:install": "true", "blog:wipeDiskOf": "203.0.113.8" })).toContain(
            'blog:wipeDiskOf: got "203.0.113.8"; expected "203.0.113.7"',
        );
    });

    test("an install without a stable disk in the host facts", () => {
        const confirmed = { ...existing, ...installing };
        expect(problem(confirmed)).toContain("config.blog.host.disk: got nothing; expected the disk nixos-anywhere erases");
        expect(problem(confirmed, { platform: "generic", disk: "/dev/sda" })).toContain(
            'config.blog.host.disk: got "/dev/sda"; expected a stable disk path such as /dev/disk/by-id/',
        );
    });

    test("a Hetzner server from a configuration that is not built for Hetzner Cloud", () => {
        expect(problem({}, { platform: "generic" })).toContain(
            'config.blog.host.platform: got "generic"; expected hetzner-cloud for a Hetzner server',
        );
    });

    test("a zone id is required only with Cloudflare; proxying only with Cloudflare", () => {
        pulumi.runtime.setAllConfig({ ...existing, "blog:hostKey": EXISTING_KEY, "blog:dns": "none" }, []);
        expect(readStackConfig(new pulumi.Config("blog")).cloudflareZoneId).toBe("");
        expect(problem({ ...existing, "blog:hostKey": EXISTING_KEY, "blog:dns": "hetzner", "blog:proxied": "true" })).toContain(
            'blog:proxied: got "true"; expected false: only Cloudflare proxies records',
        );
    });
});

test("admin keys stay a host fact: ADMIN_KEY reaches no resource", async () => {
    const run = await runProgram();
    expect(JSON.stringify(run.resources.map((r) => r.inputs))).not.toContain(ADMIN_KEY.split(" ")[1]);
});
