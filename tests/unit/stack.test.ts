import {
    BOOTSTRAP_HOST_PUBLIC_KEY,
    BOOTSTRAP_PRIVATE_KEY,
    BOOTSTRAP_PUBLIC_KEY,
    CLOSURE_1,
    CLOSURE_2,
    HOST_PRIVATE_KEY,
    HOST_PUBLIC_KEY,
    SERVER_IPV4,
    SERVER_IPV6,
    SSH_PRIVATE_KEY,
    ZONE_ID,
    evaluation,
    runProgram,
    valueOf,
} from "./program";

const SERVER = "hcloud:index/server:Server";
const FIREWALL = "hcloud:index/firewall:Firewall";
const SSH_KEY = "hcloud:index/sshKey:SshKey";
const RECORD = "cloudflare:index/dnsRecord:DnsRecord";
const COMMAND = "command:local:Command";
const HOST_KEY = "tls:index/privateKey:PrivateKey";

describe("pulumi up (update) with the default config", () => {
    let run: Awaited<ReturnType<typeof runProgram>>;
    beforeAll(async () => {
        run = await runProgram();
    });

    test("declares one component per thing a user names, and nothing else", () => {
        const types = run.resources.map((r) => r.type).sort();
        expect(types).toEqual(
            [
                "blog:cloudflare:Dns",
                "blog:hetzner:Server",
                "blog:nixos:Check",
                "blog:nixos:Deploy",
                "blog:nixos:Install",
                COMMAND,
                COMMAND,
                COMMAND,
                FIREWALL,
                HOST_KEY,
                HOST_KEY,
                HOST_KEY,
                RECORD,
                RECORD,
                SERVER,
                SSH_KEY,
            ].sort(),
        );
    });

    test("Hetzner gets one key, the stack's own bootstrap key, never the admins' keys", () => {
        expect(run.all(SSH_KEY).map((k) => k.inputs.publicKey)).toEqual([BOOTSTRAP_PUBLIC_KEY]);
        expect(run.all(SSH_KEY).map((k) => k.name)).toEqual(["blog-bootstrap"]);
        expect(run.all(HOST_KEY).map((k) => k.inputs.algorithm)).toEqual(["ED25519", "ED25519", "ED25519"]);
    });

    test("the stock image presents a throwaway host key the stack made (cloud-init ssh_keys), and the install pins it", async () => {
        const server = run.one(SERVER);
        const userData = String(server.inputs.userData);
        expect(userData.split("\n")[0]).toBe("#cloud-config");
        expect(userData).toContain("ssh_deletekeys: true\nssh_genkeytypes: []\nssh_keys:\n  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n");
        expect(userData).toContain("    BOOTSTRAP-HOST-KEY-PRIVATE-MATERIAL\n");
        expect(userData).toContain(`  ed25519_public: ${BOOTSTRAP_HOST_PUBLIC_KEY}\n`);
        // Never the permanent host key, nor a login key: the metadata service serves user data for the server's life.
        for (const other of [HOST_PRIVATE_KEY, BOOTSTRAP_PRIVATE_KEY]) expect(userData).not.toContain(`\n    ${other.split("\n")[1]}\n`);
        expect(server.secretPaths).toContain("userData");
        const install = run.all(COMMAND).find((c) => c.name.endsWith("nixos-anywhere"))!;
        expect(install.inputs.environment).toMatchObject({ BOOTSTRAP_HOST_KEY: BOOTSTRAP_HOST_PUBLIC_KEY, HOST_KEY: HOST_PUBLIC_KEY });
        // A server replaced for a new location or architecture gets a new one.
        const key = run.all(HOST_KEY).find((k) => k.name === "blog-bootstrap-host-key")!;
        expect(await valueOf(key.opts.replacementTrigger as any)).toBe("nbg1 x86_64-linux");
    });

    test("the firewall admits TCP 22, 80, 443 and ICMP from anywhere, and nothing else", () => {
        const rules = run.one(FIREWALL).inputs.rules as Array<Record<string, unknown>>;
        const summary = rules.map((r) => `${r.direction} ${r.protocol} ${r.port ?? "-"} ${JSON.stringify(r.sourceIps)}`);
        expect(summary.sort()).toEqual(
            [
                'in icmp - ["0.0.0.0/0","::/0"]',
                'in tcp 22 ["0.0.0.0/0","::/0"]',
                'in tcp 443 ["0.0.0.0/0","::/0"]',
                'in tcp 80 ["0.0.0.0/0","::/0"]',
            ].sort(),
        );
        for (const rule of rules) expect(rule.description).toEqual(expect.any(String));
    });

    test("the server takes type, location and image from config, both IP families, the keys and the firewall", () => {
        const server = run.one(SERVER);
        const firewall = run.one(FIREWALL);
        expect(server.inputs).toMatchObject({
            serverType: "cx23",
            location: "nbg1",
            image: "ubuntu-24.04",
            publicNets: [{ ipv4Enabled: true, ipv6Enabled: true }],
            labels: { "managed-by": "pulumi", project: "blog", stack: "test", domain: "blog.example-site.org" },
        });
        expect(server.inputs.sshKeys).toEqual(run.all(SSH_KEY).map((k) => k.id));
        expect(server.inputs.firewallIds).toEqual([Number(firewall.id)]);
    });

    test("the server ignores the image nixos-anywhere replaces, so an ordinary up never rebuilds it", () => {
        // userData too: servers made before the bootstrap host key stay where they are.
        expect(run.one(SERVER).opts.ignoreChanges).toEqual(["image", "sshKeys", "userData"]);
    });

    test("a new architecture is a new server: the configuration's system is the server's replacement trigger", async () => {
        expect(await valueOf(run.one(SERVER).opts.replacementTrigger as any)).toBe("x86_64-linux");
        const arm = await runProgram({
            config: { "blog:serverType": "cax11", "blog:nixosConfiguration": "blog-arm" },
            evaluation: evaluation({ system: "aarch64-linux" }),
        });
        expect(await valueOf(arm.one(SERVER).opts.replacementTrigger as any)).toBe("aarch64-linux");
    });

    test("a server of the other architecture at Hetzner is replaced whatever the state holds: serverType becomes replace-on-change", async () => {
        const armConfig = { "blog:serverType": "cax11", "blog:nixosConfiguration": "blog-arm" };
        const transformOf = (r: typeof run) => {
            const transforms = r.one(SERVER).opts.transforms ?? [];
            expect(transforms).toHaveLength(1);
            const server = r.one(SERVER);
            return transforms[0]({ custom: true, type: SERVER, name: server.name, props: server.inputs, opts: { replaceOnChanges: [] } });
        };
        // The live server is x86, the configuration Arm: the serverType change must replace.
        const across = await runProgram({
            config: armConfig,
            evaluation: evaluation({ system: "aarch64-linux" }),
            currentServer: { serverType: "cx23", location: "nbg1", primaryDiskSize: 40 },
        });
        expect(await transformOf(across)).toMatchObject({ opts: { replaceOnChanges: ["serverType"] } });
        // Same architecture (an in-place resize), or no server yet: nothing changes.
        const same = await runProgram({ config: { "blog:serverType": "cx33" }, currentServer: { serverType: "cx23", location: "nbg1", primaryDiskSize: 40 } });
        expect(await transformOf(same)).toBeUndefined();
        expect(await transformOf(run)).toBeUndefined();
    });

    test("A and AAAA records name the host's domain and point at the server's addresses", () => {
        const records = run.all(RECORD).map((r) => r.inputs);
        expect(records).toEqual(
            expect.arrayContaining([
                expect.objectContaining({ type: "A", name: "blog.example-site.org", content: SERVER_IPV4, zoneId: ZONE_ID, ttl: 1, proxied: false }),
                expect.objectContaining({ type: "AAAA", name: "blog.example-site.org", content: SERVER_IPV6, zoneId: ZONE_ID, ttl: 1, proxied: false }),
            ]),
        );
        for (const record of records) expect(record.name.endsWith(".")).toBe(false);
    });

    test("the install runs the install script once per server: its trigger is the server id and a new one replaces it", async () => {
        const install = run.all(COMMAND).find((c) => c.name.endsWith("nixos-anywhere"))!;
        const serverId = await valueOf(run.outputs.serverId);
        expect(install.inputs.create).toBe("bash scripts/install.sh");
        expect(install.inputs.triggers).toEqual([serverId]);
        expect(install.opts.replaceOnChanges).toEqual(expect.arrayContaining(["triggers"]));
        // An update (any other input changed) must not run nixos-anywhere again: it would wipe the disk.
        expect(install.inputs.update).not.toContain("install.sh");
        expect(install.inputs.environment).toMatchObject({
            TARGET_HOST: SERVER_IPV4,
            TARGET_USER: "root",
            HOST_KEY: HOST_PUBLIC_KEY,
            FLAKE: "./nix",
            NIXOS_CONFIGURATION: "blog",
            HOST_KEY_PRIVATE: HOST_PRIVATE_KEY,
            BOOTSTRAP_SSH_PRIVATE_KEY: BOOTSTRAP_PRIVATE_KEY,
            PUBLISHED_ADDRESSES: `${SERVER_IPV4} ${SERVER_IPV6}`,
        });
    });

    test("the records wait for the deploy's health check, and the check runs again in full after them", () => {
        expect(run.one("blog:nixos:Install").opts.dependsOn ?? []).toEqual([]);
        expect(run.one("blog:cloudflare:Dns").opts.dependsOn).toEqual([expect.objectContaining({ __pulumiType: "blog:nixos:Deploy" })]);
        expect(run.one("blog:nixos:Check").opts.dependsOn).toEqual([expect.objectContaining({ __pulumiType: "blog:cloudflare:Dns" })]);
        const deploy = run.all(COMMAND).find((c) => c.name.endsWith("switch"))!;
        const check = run.all(COMMAND).find((c) => c.name.endsWith("check"))!;
        expect(deploy.inputs.environment.HEALTH_ACME).toBe("placeholder");
        expect(check.inputs.environment.HEALTH_ACME).toBe("issued");
        // The check carries no secrets of the host's: it changes nothing on it.
        expect(Object.keys(check.inputs.environment).filter((k) => k.startsWith("HOST_SECRET"))).toEqual([]);
        const { HEALTH_ACME: _a, HOST_SECRETS: _s, ...deployRest } = deploy.inputs.environment;
        const { HEALTH_ACME: _b, ...checkRest } = check.inputs.environment;
        expect(checkRest).toEqual(deployRest);
    });

    test("the deploy pushes the evaluated closure with the pinned host key, after the install", () => {
        const deploy = run.all(COMMAND).find((c) => c.name.endsWith("switch"))!;
        expect(deploy.inputs.create).toBe("bash scripts/deploy.sh");
        expect(deploy.inputs.update).toBe("bash scripts/deploy.sh");
        expect(deploy.inputs.environment).toMatchObject({
            SYSTEM_CLOSURE: CLOSURE_1,
            FLAKE_ATTR: './nix#nixosConfigurations."blog".config.system.build.toplevel',
            TARGET_HOST: SERVER_IPV4,
            HOST_KEY: HOST_PUBLIC_KEY,
            HEALTH_URL: "https://blog.example-site.org/",
            PUBLISHED_ADDRESSES: `${SERVER_IPV4} ${SERVER_IPV6}`,
            DEPLOY_ORIGIN: "pulumi blog/test",
        });
        // pulumi-command replaces a Command whose triggers change: the deploy has none.
        expect(deploy.inputs.triggers).toBeUndefined();
        const component = run.one("blog:nixos:Deploy");
        expect(component.opts.dependsOn).toEqual([expect.objectContaining({ __pulumiType: "blog:nixos:Install" })]);
    });

    test("exports the addresses, the URL, the server id, the host key and the deployed closure", async () => {
        const values = Object.fromEntries(
            await Promise.all(Object.entries(run.outputs).map(async ([k, v]) => [k, await valueOf(v as any)])),
        );
        expect(values).toEqual({
            ipv4: SERVER_IPV4,
            ipv6: SERVER_IPV6,
            url: "https://blog.example-site.org/",
            serverId: expect.stringMatching(/^[0-9]+$/),
            hostKey: HOST_PUBLIC_KEY,
            hostAgeKey: expect.stringMatching(/^age1[02-9ac-hj-np-z]{58}$/),
            systemClosure: CLOSURE_1,
            nixosConfiguration: "blog",
            dataVolume: null,
            backup: null,
            backupPassword: null,
            dnsRecords: [
                { type: "A", name: "blog.example-site.org", content: SERVER_IPV4, managedBy: "cloudflare" },
                { type: "AAAA", name: "blog.example-site.org", content: SERVER_IPV6, managedBy: "cloudflare" },
            ],
        });
    });
});

describe("the deploy's inputs", () => {
    const deployInputs = async (toplevel: string) => {
        const run = await runProgram({ evaluation: evaluation({}, toplevel) });
        const { inputs } = run.all(COMMAND).find((c) => c.name.endsWith("switch"))!;
        return inputs;
    };

    test("are identical when the closure is unchanged, so the deploy is no change at all", async () => {
        expect(await deployInputs(CLOSURE_1)).toEqual(await deployInputs(CLOSURE_1));
    });

    test("change only in SYSTEM_CLOSURE when the closure changes", async () => {
        const before = await deployInputs(CLOSURE_1);
        const after = await deployInputs(CLOSURE_2);
        expect(after.environment.SYSTEM_CLOSURE).toBe(CLOSURE_2);
        expect({ ...after, environment: { ...after.environment, SYSTEM_CLOSURE: CLOSURE_1 } }).toEqual(before);
    });

    test("carry the configured systemClosure instead of the evaluated one, with no flake build", async () => {
        const run = await runProgram({ config: { "blog:systemClosure": CLOSURE_2 } });
        const { inputs } = run.all(COMMAND).find((c) => c.name.endsWith("switch"))!;
        expect(inputs.environment.SYSTEM_CLOSURE).toBe(CLOSURE_2);
        expect(inputs.environment.FLAKE_ATTR).toBeUndefined();
        expect(await valueOf(run.outputs.systemClosure)).toBe(CLOSURE_2);
    });
});

describe("secrets", () => {
    let run: Awaited<ReturnType<typeof runProgram>>;
    beforeAll(async () => {
        run = await runProgram({
            config: { "blog:sshPrivateKey": SSH_PRIVATE_KEY },
            secretKeys: ["blog:sshPrivateKey"],
        });
    });

    test("never appear in a command line", () => {
        for (const command of run.all(COMMAND)) {
            for (const field of ["create", "update", "delete"]) {
                const line = String(command.inputs[field] ?? "");
                expect(line).not.toContain("PRIVATE KEY");
                expect(line).not.toContain("PRIVATE-MATERIAL");
            }
        }
    });

    test("reach the commands only through their environment", () => {
        const install = run.all(COMMAND).find((c) => c.name.endsWith("nixos-anywhere"))!;
        const deploy = run.all(COMMAND).find((c) => c.name.endsWith("switch"))!;
        expect(install.inputs.environment.HOST_KEY_PRIVATE).toBe(HOST_PRIVATE_KEY);
        expect(install.inputs.environment.BOOTSTRAP_SSH_PRIVATE_KEY).toBe(BOOTSTRAP_PRIVATE_KEY);
        expect(install.inputs.environment.SSH_PRIVATE_KEY).toBe(SSH_PRIVATE_KEY);
        expect(deploy.inputs.environment.SSH_PRIVATE_KEY).toBe(SSH_PRIVATE_KEY);
        expect(deploy.inputs.environment.HOST_KEY_PRIVATE).toBeUndefined();
    });

    test("no stack output holds a private key", async () => {
        for (const [name, output] of Object.entries(run.outputs)) {
            expect([name, String(await valueOf(output as any))]).not.toEqual([name, expect.stringContaining("PRIVATE")]);
        }
    });

    test("command output, which may echo the environment, is stored as a secret", () => {
        for (const command of run.all(COMMAND)) {
            expect(command.opts.additionalSecretOutputs).toEqual(expect.arrayContaining(["stdout", "stderr"]));
        }
    });
});

describe("the checks that ask Hetzner and Cloudflare (preflight)", () => {
    test("ask for the server types, the stack's server by its labels, and the zone", async () => {
        const run = await runProgram();
        expect(run.invokes.map((i) => i.token).sort()).toEqual([
            "cloudflare:index/getZone:getZone",
            "hcloud:index/getServerTypes:getServerTypes",
            "hcloud:index/getServers:getServers",
            "hcloud:index/getVolumes:getVolumes",
        ]);
        expect(run.invokes.find((i) => i.token.endsWith("getServers"))!.inputs).toEqual({
            withSelector: "managed-by=pulumi,project=blog,stack=test",
        });
        expect(run.invokes.find((i) => i.token.endsWith("getZone"))!.inputs).toEqual({ zoneId: ZONE_ID });
    });

    // A failing check fails the program asynchronously, which the mocks cannot report; the e2e
    // suite shows with the real engine that preview fails with every problem and creates nothing.
    test("every Hetzner resource carries the stack's labels", async () => {
        const run = await runProgram({ preview: true });
        for (const r of run.resources.filter((x) => x.type.startsWith("hcloud:"))) {
            expect(r.inputs.labels).toMatchObject({ "managed-by": "pulumi", stack: "test" });
        }
    });

    test("a long domain still makes valid Hetzner labels", async () => {
        const domain = `${"a".repeat(60)}.example-site.org`;
        const run = await runProgram({ evaluation: evaluation({ domain }) });
        const label = run.one(SERVER).inputs.labels.domain as string;
        expect(label.length).toBeLessThanOrEqual(63);
        expect(label).toMatch(/^[a-z0-9][a-z0-9._-]*[a-z0-9]$/);
        expect(run.all(RECORD).map((r) => r.inputs.name)).toEqual([domain, domain]);
    });
});
