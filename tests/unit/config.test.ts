import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { configDefaults, readStackConfig } from "../../src/config";
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

    test("Pulumi.yaml declares every key, with the same defaults as the program", () => {
        const project = fs.readFileSync(path.join(__dirname, "../../Pulumi.yaml"), "utf8");
        for (const [key, value] of Object.entries(configDefaults)) {
            const declared = new RegExp(`\\n  ${key}:\\n    type: \\w+\\n    description: .+\\n    default: ${value}\\n`);
            expect([key, declared.test(project)]).toEqual([key, true]);
        }
        const backupKeys = ["backupStorageBoxId", "backupStorageBoxHostKey", "backupS3Endpoint", "backupS3Bucket", "backupS3Region"];
        for (const key of [...backupKeys, "backupS3AccessKeyId", "backupS3SecretAccessKey", "backupPassword"]) {
            expect(project).toContain(`\n  ${key}:\n    type: string\n`);
        }
        for (const key of ["cloudflareZoneId", "systemClosure", "sshPrivateKey", "hostIpv4", "hostIpv6", "hostKey", "wipeDiskOf"]) {
            expect(project).toContain(`\n  ${key}:\n    type: string\n`);
        }
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
        [{ "blog:volumeSize": "5" }, 'blog:volumeSize: got "5"; expected 0 (no new data volume) or a size in GB from 10 to 10240', {}],
        [{ "blog:volumeSize": "ten" }, 'blog:volumeSize: got "ten"; expected 0 (no new data volume)', {}],
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
