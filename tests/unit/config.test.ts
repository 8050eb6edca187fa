import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { configDefaults, readStackConfig } from "../../src/config";
import { CONFIG_KEYS } from "../../src/configKeys";
import { parse as parseYaml } from "yaml";
import { SSH_PRIVATE_KEY, ZONE_ID, runProgram } from "./program";

// A real key (its public half is read at preview): the fixture of the program tests.
const KEY = SSH_PRIVATE_KEY;

function read(config: Record<string, string>, secretKeys: string[] = []) {
    pulumi.runtime.setAllConfig({ "blog:cloudflareZoneId": ZONE_ID, ...config }, secretKeys);
    return readStackConfig(new pulumi.Config("blog"));
}

function problem(config: Record<string, string>, secretKeys: string[] = []): string {
    try {
        read(config, secretKeys);
    } catch (err) {
        return (err as Error).message;
    }
    throw new Error(`config ${JSON.stringify(config)} was accepted; expected an error`);
}

describe("stack config", () => {
    test("defaults to a cx23 in nbg1 from ubuntu-24.04, the ./nix flake's blog host, unproxied automatic-TTL records", () => {
        expect(read({})).toEqual({
            host: "hetzner",
            dns: "cloudflare",
            cloudflareZoneId: ZONE_ID,
            serverType: "cx23",
            location: "nbg1",
            image: "ubuntu-24.04",
            flake: "./nix",
            nixosConfiguration: "blog",
            proxied: false,
            manageSslMode: false,
            httpFromCloudflareOnly: false,
            volumeSize: 0,
            deleteDataOnDestroy: false,
            backups: false,
            ttl: 1,
            hostSecrets: {},
            backup: { target: { kind: "none" }, password: undefined },
        });
    });

    test("Pulumi.yaml declares every key of CONFIG_KEYS (none else), untyped, with the program's defaults", () => {
        const project = parseYaml(fs.readFileSync(path.join(__dirname, "../../Pulumi.yaml"), "utf8")) as {
            config: Record<string, { type?: string; description?: string; default?: unknown }>;
        };
        expect(Object.keys(project.config).sort()).toEqual(CONFIG_KEYS.filter((k) => k.type !== "object").map((k) => k.name).sort());
        for (const k of CONFIG_KEYS.filter((k) => k.type !== "object")) {
            const declared = project.config[k.name];
            // No type: the CLI would stop at the first wrongly typed key before the program runs.
            expect([k.name, declared.type, typeof declared.description]).toEqual([k.name, undefined, "string"]);
            expect([k.name, declared.default]).toEqual([k.name, k.default ?? ""]);
        }
    });

    test("configDefaults agree with CONFIG_KEYS", () => {
        const field: Record<string, string> = { dataVolumeSize: "volumeSize", dataVolumeDeleteOnDestroy: "deleteDataOnDestroy" };
        for (const k of CONFIG_KEYS.filter((k) => k.default !== undefined)) {
            expect([k.name, (configDefaults as Record<string, unknown>)[field[k.name] ?? k.name]]).toEqual([k.name, k.default]);
        }
        expect(Object.keys(configDefaults).length).toBe(CONFIG_KEYS.filter((k) => k.default !== undefined).length);
    });

    test("accepts every documented Hetzner location and the Arm server types", () => {
        for (const location of ["nbg1", "fsn1", "hel1", "ash", "hil", "sin"]) {
            expect(read({ "blog:location": location }).location).toBe(location);
        }
        expect(read({ "blog:serverType": "cax11" }).serverType).toBe("cax11");
        expect(read({ "blog:ttl": "60" }).ttl).toBe(60);
        expect(read({ "blog:proxied": "true", "blog:ttl": "1" })).toMatchObject({ proxied: true, ttl: 1 });
    });

    test.each([
        [{}, "blog:cloudflareZoneId: got nothing; expected a Cloudflare zone id", { omitZone: true }],
        [{ "blog:cloudflareZoneId": "my-zone" }, 'blog:cloudflareZoneId: got "my-zone"; expected a Cloudflare zone id: 32 lowercase hexadecimal characters', {}],
        [{ "blog:serverType": "CX 23" }, 'blog:serverType: got "CX 23"; expected a Hetzner Cloud server type such as cx23', {}],
        [{ "blog:location": "Nuremberg" }, 'blog:location: got "Nuremberg"; expected a Hetzner Cloud location such as nbg1', {}],
        [{ "blog:image": "Ubuntu 24.04" }, 'blog:image: got "Ubuntu 24.04"; expected a Hetzner Cloud image name', {}],
        [{ "blog:ttl": "30" }, 'blog:ttl: got "30"; expected 1 (automatic) or a whole number of seconds from 60 to 86400', {}],
        [{ "blog:ttl": "86401" }, 'blog:ttl: got "86401"; expected 1 (automatic)', {}],
        [{ "blog:ttl": "five" }, 'blog:ttl: got "five"; expected 1 (automatic)', {}],
        [{ "blog:proxied": "yes" }, 'blog:proxied: got "yes"; expected true or false', {}],
        [
            { "blog:proxied": "true", "blog:ttl": "300" },
            'blog:ttl: got "300"; expected 1 (automatic) while blog:proxied is true: Cloudflare keeps the TTL of a proxied record itself',
            {},
        ],
        [{ "blog:manageSslMode": "true" }, 'blog:manageSslMode: got "true"; expected false unless blog:proxied is true', {}],
        [{ "blog:httpFromCloudflareOnly": "true" }, 'blog:httpFromCloudflareOnly: got "true"; expected false unless blog:proxied is true', {}],
        [{ "blog:dataVolumeSize": "5" }, 'blog:dataVolumeSize: got "5"; expected 0 (no new data volume) or a size in GB from 10 to 10240', {}],
        [{ "blog:dataVolumeSize": "ten" }, 'blog:dataVolumeSize: got "ten"; expected 0 (no new data volume)', {}],
        [{ "blog:backups": "daily" }, 'blog:backups: got "daily"; expected true or false', {}],
        [{ "blog:flake": "./nix#blog" }, 'blog:flake: got "./nix#blog"; expected a flake reference without spaces or \'#\'', {}],
        [{ "blog:nixosConfiguration": "my blog" }, 'blog:nixosConfiguration: got "my blog"; expected a nixosConfigurations attribute name', {}],
        [{ "blog:systemClosure": "/tmp/result" }, 'blog:systemClosure: got "/tmp/result"; expected a Nix store path', {}],
    ])("rejects %j, naming the key, the value and what was expected", (config, message, { omitZone }: { omitZone?: boolean }) => {
        if (omitZone) {
            pulumi.runtime.setAllConfig({});
            expect(() => readStackConfig(new pulumi.Config("blog"))).toThrow(message);
        } else {
            expect(problem(config)).toContain(message);
        }
    });

    test("refuses a Cloudflare Origin CA key (service key), which Cloudflare no longer accepts, without printing it", () => {
        const message = problem({ "cloudflare:apiUserServiceKey": "v1.0-0123456789abcdef-servicekey" }, ["cloudflare:apiUserServiceKey"]);
        expect(message).toContain("cloudflare:apiUserServiceKey: got \"[secret, ");
        expect(message).toContain("Cloudflare stopped accepting Origin CA keys (service keys) on 2026-09-30");
        expect(message).toContain("SSL and Certificates > Edit");
        expect(message).not.toContain("servicekey");
        // Not the stack's business when Cloudflare is not used.
        expect(read({ "blog:dns": "none", "cloudflare:apiUserServiceKey": "v1.0-x" }).dns).toBe("none");
    });

    test("lists every bad key at once, so one preview shows all there is to fix", () => {
        const message = problem({ "blog:ttl": "5", "blog:location": "mars", "blog:serverType": "big" });
        expect(message).toContain("blog:ttl");
        expect(message).toContain("blog:location");
        expect(message).toContain("blog:serverType");
    });

    test("takes sshPrivateKey only as a secret, and never prints it", () => {
        expect(read({ "blog:sshPrivateKey": KEY }, ["blog:sshPrivateKey"]).sshPrivateKey).toBeDefined();
        const plain = problem({ "blog:sshPrivateKey": KEY });
        expect(plain).toContain("blog:sshPrivateKey: got \"[secret, ");
        expect(plain).toContain("expected a secret: set it again with `pulumi config set --secret sshPrivateKey`");
        const notAKey = problem({ "blog:sshPrivateKey": "hunter2-not-a-key" }, ["blog:sshPrivateKey"]);
        expect(notAKey).toContain("expected an unencrypted OpenSSH private key");
        expect(plain + notAKey).not.toContain("hunter2");
        expect(plain + notAKey).not.toContain("b3BlbnNzaC1rZXktdjEAAAAABG5vbmU");
    });

    test("the sshPrivateKey it returns is a Pulumi secret", async () => {
        const key = read({ "blog:sshPrivateKey": KEY }, ["blog:sshPrivateKey"]).sshPrivateKey!;
        expect(await pulumi.isSecret(key)).toBe(true);
    });
});

describe("a bad config fails the program before any resource is declared", () => {
    test("preview stops with the config error and registers nothing", async () => {
        const failure = await runProgram({ preview: true, config: { "blog:ttl": "20" } }).catch((err) => err);
        expect(failure.message).toContain('blog:ttl: got "20"; expected 1 (automatic) or a whole number of seconds from 60 to 86400');
        expect(failure.registered).toEqual([]);
    });
});

describe("unknown, mistyped and renamed keys", () => {
    test("an unknown key is refused with the nearest known key; a host fact says where it lives", () => {
        const message = problem({ "blog:serverTyp": "cx23", "blog:domain": "blog.example.net", "blog:zzzzzz": "1" });
        expect(message).toContain('blog:serverTyp: got "cx23"; expected no such stack key; did you mean serverType?');
        expect(message).toContain("blog:domain: got \"blog.example.net\"; expected no such stack key: domain is a fact of the NixOS host file (blog.host.domain");
        expect(message).toContain('blog:zzzzzz: got "1"; expected no such stack key (`pulumi config rm zzzzzz`');
        expect(message).not.toContain("did you mean dns");
    });

    test("an unknown key set as a secret shows its shape only", () => {
        const message = problem({ "blog:sshPrivatKey": "the-secret-text" }, ["blog:sshPrivatKey"]);
        expect(message).toContain("blog:sshPrivatKey: got \"[secret, 15 characters]\"; expected no such stack key; did you mean sshPrivateKey?");
        expect(message).not.toContain("the-secret-text");
    });

    test("wrong types and an unknown key are reported in one message", () => {
        const message = problem({ "blog:proxied": "yes", "blog:ttl": "5m", "blog:serverTyp": "x" });
        expect(message.split("\n").filter((l) => l.startsWith("  - "))).toEqual([
            '  - blog:serverTyp: got "x"; expected no such stack key; did you mean serverType? (`pulumi config rm serverTyp`, then `pulumi config set serverType <value>`; see docs/configuration.md)',
            '  - blog:proxied: got "yes"; expected true or false',
            '  - blog:ttl: got "5m"; expected 1 (automatic) or a whole number of seconds from 60 to 86400',
        ]);
    });

    test("the data volume's former key names are read, with a warning naming the new key", () => {
        const warn = jest.spyOn(pulumi.log, "warn").mockImplementation(() => Promise.resolve());
        try {
            const config = read({ "blog:volumeSize": "20", "blog:deleteDataOnDestroy": "true" });
            expect(config).toMatchObject({ volumeSize: 20, deleteDataOnDestroy: true });
            const warnings = warn.mock.calls.map((c) => c[0]);
            expect(warnings).toEqual([
                "blog:volumeSize is now called blog:dataVolumeSize; the old name is read for one more release. Rename it: `pulumi config set dataVolumeSize 20 && pulumi config rm volumeSize`",
                "blog:deleteDataOnDestroy is now called blog:dataVolumeDeleteOnDestroy; the old name is read for one more release. Rename it: `pulumi config set dataVolumeDeleteOnDestroy true && pulumi config rm deleteDataOnDestroy`",
            ]);
            // Pulumi.yaml's default of the new name does not conflict with the old name.
            expect(read({ "blog:volumeSize": "20", "blog:dataVolumeSize": "0" }).volumeSize).toBe(20);
            expect(problem({ "blog:volumeSize": "20", "blog:dataVolumeSize": "30" })).toContain(
                'blog:volumeSize: got "20"; expected unset: it is the former name of blog:dataVolumeSize, which is set too (to "30")',
            );
            expect(read({ "blog:dataVolumeSize": "30" }).volumeSize).toBe(30);
        } finally {
            warn.mockRestore();
        }
    });
});
