/**
 * Runs index.ts under Pulumi's mocks, in a module registry of its own, with the flake's
 * evaluation replaced (tests never run nix). Returns every resource the program registered and
 * the stack's outputs, so a test reads like "given this config and this flake, the program
 * declares this".
 */
import { generateKeyPairSync } from "crypto";
import type * as pulumiType from "@pulumi/pulumi";
import * as rpc from "@pulumi/pulumi/runtime/rpc";

export const ZONE_ID = "0123456789abcdef0123456789abcdef";
// A real ed25519 pair made for these tests only (ssh-keygen): the program parses keys per type and
// derives the login key from sshPrivateKey, so the fixtures must be keys, not look-alikes.
export const ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICHu+RFwisljRGryygsE2BxWiEx6F4RW0vCN8o66ePk alice@laptop";
export const CLOSURE_1 = "/nix/store/0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-blog-25.11";
export const CLOSURE_2 = "/nix/store/9z8y7x6w5v4s3r2q1p0n9m8l7k6j5i4h-nixos-system-blog-25.11";
export const SERVER_IPV4 = "203.0.113.10";
export const SERVER_IPV6 = "2001:db8:1:2::1";
export const HOST_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICU6gPssRs3CeMG9MUDzBgpk27fV/8wLIWC4U6soxrf5";
export const HOST_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nHOST-KEY-PRIVATE-MATERIAL\n-----END OPENSSH PRIVATE KEY-----\n";
export const BOOTSTRAP_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINbuc+KAuR30zRZoZiutk17oms2Y/xCYxEkQ/NzChNum";
export const BOOTSTRAP_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nBOOTSTRAP-KEY-PRIVATE-MATERIAL\n-----END OPENSSH PRIVATE KEY-----\n";
export const BOOTSTRAP_HOST_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootstrapHostKeyFromTheTlsProviderMockxxxx";
export const BOOTSTRAP_HOST_PRIVATE_KEY =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nBOOTSTRAP-HOST-KEY-PRIVATE-MATERIAL\n-----END OPENSSH PRIVATE KEY-----\n";
/** The origin key the tls mock hands out: a real P-256 key, so the program can compute its pin. */
export const ORIGIN_KEY = generateKeyPairSync("ec", {
    namedCurve: "P-256",
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
});
export const ORIGIN_CERT = "-----BEGIN CERTIFICATE-----\nORIGIN-CA-CERTIFICATE\n-----END CERTIFICATE-----\n";
export const CLOUDFLARE_RANGES = { ipv4Cidrs: ["173.245.48.0/20", "103.21.244.0/22"], ipv6Cidrs: ["2400:cb00::/32"] };
/** The private half of ADMIN_KEY (a test key, nothing else uses it). */
export const SSH_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACCAh7vkRcIrJY0Rq8soLBNgcVohMeheEVtLwjfKOunj5AAAAJCRuDyukbg8\nrgAAAAtzc2gtZWQyNTUxOQAAACCAh7vkRcIrJY0Rq8soLBNgcVohMeheEVtLwjfKOunj5A\nAAAEDh9pC8pCxVUGhBo4Rgptgcwo60bjNjoaZtlawppX15uoCHu+RFwisljRGryygsE2Bx\nWiEx6F4RW0vCN8o66ePkAAAADGFsaWNlQGxhcHRvcAE=\n-----END OPENSSH PRIVATE KEY-----\n";

export interface Evaluation {
    host: {
        domain: string;
        acmeEmail: string;
        adminSshKeys: string[];
        system: string;
        platform: string;
        disk: string | null;
        tls?: string;
        dataVolume?: boolean;
    };
    secrets?: string[];
    /** `blog.backup.paths` of the host (nix/modules/backup.nix); defaults to ["/data"]. */
    backupPaths?: string[];
    toplevel: string;
}

export function evaluation(overrides: Partial<Evaluation["host"]> = {}, toplevel = CLOSURE_1): Evaluation {
    return {
        host: {
            domain: "blog.example-site.org",
            acmeEmail: "alice@example-site.org",
            adminSshKeys: [ADMIN_KEY],
            system: "x86_64-linux",
            platform: "hetzner-cloud",
            disk: null,
            ...overrides,
        },
        backupPaths: ["/data"],
        toplevel,
    };
}

export interface Registered {
    type: string;
    name: string;
    /** Inputs as the engine received them, secrets unwrapped (see `secretPaths`). */
    inputs: Record<string, any>;
    /** The id the mock provider gave it. */
    id?: string;
    /** Paths of the inputs the engine received as secrets, such as "environment". */
    secretPaths: string[];
    /** Resource options, captured by a stack transformation. */
    opts: pulumiType.CustomResourceOptions;
}

export interface ProgramRun {
    resources: Registered[];
    /** Every provider function the program called, with its arguments. */
    invokes: Array<{ token: string; inputs: Record<string, any> }>;
    outputs: Record<string, pulumiType.Output<unknown>>;
    pulumi: typeof pulumiType;
    /** The one resource of this type; fails the test when there is not exactly one. */
    one(type: string): Registered;
    all(type: string): Registered[];
}

/** Hetzner's catalog as the mocks answer `getServerTypes`: the fields the program reads. */
export const SERVER_TYPES = [
    { name: "cx23", architecture: "x86", memory: 4, disk: 40, locations: ["nbg1", "fsn1", "hel1"] },
    { name: "cx33", architecture: "x86", memory: 8, disk: 80, locations: ["nbg1", "fsn1", "hel1"] },
    { name: "cpx11", architecture: "x86", memory: 2, disk: 40, locations: ["nbg1", "fsn1", "hel1", "ash", "hil", "sin"] },
    { name: "cax11", architecture: "arm", memory: 4, disk: 40, locations: ["nbg1", "fsn1", "hel1"] },
].map(({ locations, ...t }) => ({
    ...t,
    locations: locations.map((name) => ({ name, available: true, isDeprecated: false, unavailableAfter: "" })),
}));

export interface RunOptions {
    config?: Record<string, string>;
    secretKeys?: string[];
    evaluation?: Evaluation;
    preview?: boolean;
    /** The zone's name, as Cloudflare's getZone answers; defaults to example-site.org. */
    zoneName?: string;
    /** The Hetzner DNS zones getZones answers; defaults to none. */
    hetznerZones?: string[];
    /** The stack's server as Hetzner's getServers answers; defaults to none (a new stack). */
    currentServer?: { serverType: string; location: string; primaryDiskSize: number };
    /** The stack's volume as Hetzner's getVolumes answers; defaults to none. */
    currentVolume?: { name: string; id: number; size: number; location: string; serverId?: number };
    /** Volumes by id, as getVolume answers; defaults to none. */
    volumes?: Record<number, { name: string; size: number; location: string; serverId?: number }>;
    /** The zone's SSL mode, as getZoneSetting answers for `ssl`; defaults to strict. */
    sslMode?: string;
    /** Storage Boxes by id, as getStorageBox answers; defaults to none. */
    storageBoxes?: Record<number, { username: string; server: string; location: string }>;
    /** What scripts/backup-status.sh prints (the command:local:run invoke); defaults to an empty repository. */
    backupStatus?: string;
}

/** The generated passwords' value in the mocks (a RandomPassword's `result`). */
export const RANDOM_PASSWORD = "GeneratedRandomPasswordForTheMocks-0123456789abcdef";

/** Numeric ids, the way Hetzner hands them out. */
let nextId = 1000;

// Each run loads the SDK afresh, and each load adds its own exit listener.
process.setMaxListeners(100);

export async function runProgram(options: RunOptions = {}): Promise<ProgramRun> {
    const config = { "blog:cloudflareZoneId": ZONE_ID, ...(options.config ?? {}) };
    const evaluated = options.evaluation ?? evaluation();
    let run: ProgramRun | undefined;

    await jest.isolateModulesAsync(async () => {
        const pulumi: typeof pulumiType = require("@pulumi/pulumi");
        const resources: Registered[] = [];
        const invokes: ProgramRun["invokes"] = [];
        const byName = new Map<string, Registered>();

        await pulumi.runtime.setMocks(
            {
                newResource(args) {
                    // A preview creates nothing: ids and computed outputs stay unknown.
                    const id = options.preview ? undefined : `${nextId++}`;
                    const state: Record<string, unknown> = { ...args.inputs };
                    if (options.preview) {
                        // Inputs pass through as known; everything the provider would compute stays unknown.
                    } else if (args.type === "hcloud:index/server:Server") {
                        state.ipv4Address = SERVER_IPV4;
                        state.ipv6Address = SERVER_IPV6;
                    } else if (args.type === "tls:index/privateKey:PrivateKey" && args.name.endsWith("origin-key")) {
                        state.publicKeyPem = ORIGIN_KEY.publicKey;
                        state.privateKeyPem = ORIGIN_KEY.privateKey;
                    } else if (args.type === "tls:index/certRequest:CertRequest") {
                        state.certRequestPem = "-----BEGIN CERTIFICATE REQUEST-----\nCSR\n-----END CERTIFICATE REQUEST-----\n";
                    } else if (args.type === "cloudflare:index/originCaCertificate:OriginCaCertificate") {
                        state.certificate = ORIGIN_CERT;
                    } else if (args.type === "hcloud:index/volume:Volume") {
                        state.name = `${args.name}-${id}`;
                        state.linuxDevice = `/dev/disk/by-id/scsi-0HC_Volume_${id}`;
                    } else if (args.type === "tls:index/privateKey:PrivateKey" && args.name.endsWith("bootstrap-host-key")) {
                        state.publicKeyOpenssh = `${BOOTSTRAP_HOST_PUBLIC_KEY}\n`;
                        state.privateKeyOpenssh = BOOTSTRAP_HOST_PRIVATE_KEY;
                    } else if (args.type === "tls:index/privateKey:PrivateKey" && args.name.endsWith("host-key")) {
                        state.publicKeyOpenssh = `${HOST_PUBLIC_KEY}\n`;
                        state.privateKeyOpenssh = HOST_PRIVATE_KEY;
                    } else if (args.type === "tls:index/privateKey:PrivateKey") {
                        state.publicKeyOpenssh = `${BOOTSTRAP_PUBLIC_KEY}\n`;
                        state.privateKeyOpenssh = BOOTSTRAP_PRIVATE_KEY;
                    } else if (args.type === "random:index/randomPassword:RandomPassword") {
                        state.result = `${RANDOM_PASSWORD}-${args.name}`;
                    } else if (args.type === "hcloud:index/storageBoxSubaccount:StorageBoxSubaccount") {
                        state.username = "u1234-sub1";
                        state.server = "u1234-sub1.your-storagebox.de";
                    } else if (args.type === "command:local:Command" && args.inputs.create === "bash scripts/deploy.sh") {
                        // What scripts/deploy.sh prints last on stdout when it succeeds.
                        const closure = unwrapSecrets(args.inputs.environment, "", []).SYSTEM_CLOSURE;
                        state.stdout = `BLOG_DEPLOYED_SYSTEM=${closure}`;
                    }
                    const entry = byName.get(`${args.type}::${args.name}`);
                    if (entry) {
                        entry.id = id;
                        entry.secretPaths = [];
                        entry.inputs = unwrapSecrets(args.inputs, "", entry.secretPaths);
                    }
                    return { id: id as string, state };
                },
                call(args) {
                    invokes.push({ token: args.token, inputs: args.inputs });
                    if (args.token === "cloudflare:index/getZone:getZone") {
                        return { id: args.inputs.zoneId, name: options.zoneName ?? "example-site.org" };
                    }
                    if (args.token === "hcloud:index/getServerTypes:getServerTypes") {
                        return { id: "server-types", serverTypes: SERVER_TYPES };
                    }
                    if (args.token === "hcloud:index/getZones:getZones") {
                        return { id: "zones", zones: (options.hetznerZones ?? []).map((name, i) => ({ id: i + 1, name })) };
                    }
                    if (args.token === "hcloud:index/getServers:getServers") {
                        return { id: "servers", servers: options.currentServer ? [options.currentServer] : [] };
                    }
                    if (args.token === "hcloud:index/getVolumes:getVolumes") {
                        return { id: "volumes", volumes: options.currentVolume ? [options.currentVolume] : [] };
                    }
                    if (args.token === "hcloud:index/getVolume:getVolume") {
                        const v = options.volumes?.[args.inputs.id];
                        if (!v) throw new Error(`volume ${args.inputs.id} not found`);
                        return { ...v, id: args.inputs.id, linuxDevice: `/dev/disk/by-id/scsi-0HC_Volume_${args.inputs.id}` };
                    }
                    if (args.token === "cloudflare:index/getZoneSetting:getZoneSetting") {
                        return { id: "ssl", settingId: "ssl", value: options.sslMode ?? "strict", editable: true, enabled: true };
                    }
                    if (args.token === "hcloud:index/getStorageBox:getStorageBox") {
                        const box = options.storageBoxes?.[args.inputs.id];
                        if (!box) throw new Error(`storage box not found: id ${args.inputs.id}`);
                        return { ...box, id: args.inputs.id };
                    }
                    if (args.token === "command:local:run") {
                        return { ...args.inputs, stdout: options.backupStatus ?? '{"state":"empty"}', stderr: "" };
                    }
                    if (args.token === "cloudflare:index/getIpRanges:getIpRanges") {
                        return { etag: "e", jdcloudCidrs: [], ...CLOUDFLARE_RANGES };
                    }
                    throw new Error(`no canned answer for invoke ${args.token}`);
                },
            },
            "blog",
            "test",
            options.preview ?? false,
        );
        pulumi.runtime.setAllConfig(config, options.secretKeys ?? []);
        jest.doMock("../../src/nixEval", () => ({
            ...jest.requireActual("../../src/nixEval"),
            evaluateFlake: jest.fn(() => evaluated),
        }));

        // As the language host does: the program runs inside the root stack resource, which
        // lets a stack transformation see every resource's options.
        let outputs: Record<string, pulumiType.Output<unknown>> = {};
        let programError: unknown;
        await pulumi.runtime.runInPulumiStack(async () => {
            pulumi.runtime.registerStackTransformation((args) => {
                const entry: Registered = { type: args.type, name: args.name, inputs: {}, secretPaths: [], opts: args.opts };
                resources.push(entry);
                byName.set(`${args.type}::${args.name}`, entry);
                return undefined;
            });
            try {
                outputs = require("../../index");
            } catch (err) {
                programError = err;
            }
            return outputs;
        });
        if (programError) {
            Object.assign(programError as object, { registered: resources.filter((r) => !r.type.startsWith("pulumi:")) });
            throw programError;
        }
        // Every custom resource reaches the mock monitor once its inputs settle; wait for that, bounded.
        const deadline = Date.now() + 3000;
        const expected = () => resources.filter((r) => !r.type.startsWith("blog:")).every((r) => Object.keys(r.inputs).length > 0);
        while (!(resources.length > 0 && expected()) && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 10));
        }
        run = {
            resources,
            invokes,
            outputs,
            pulumi,
            all: (type) => resources.filter((r) => r.type === type),
            one(type) {
                const found = resources.filter((r) => r.type === type);
                if (found.length !== 1) throw new Error(`expected exactly one ${type}, found ${found.length}`);
                return found[0];
            },
        };
    });
    return run!;
}

/** Inputs as the mock monitor received them, each secret unwrapped (the SDK's own isRpcSecret/unwrapRpcSecret) and its path noted. */
function unwrapSecrets(value: any, path: string, secretPaths: string[]): any {
    if (Array.isArray(value)) return value.map((v, i) => unwrapSecrets(v, `${path}[${i}]`, secretPaths));
    if (value === null || typeof value !== "object") return value;
    if (rpc.isRpcSecret(value)) {
        secretPaths.push(path);
        return unwrapSecrets(rpc.unwrapRpcSecret(value), path, secretPaths);
    }
    return Object.fromEntries(
        Object.entries(value).map(([k, v]) => [k, unwrapSecrets(v, path ? `${path}.${k}` : k, secretPaths)]),
    );
}

/** Resolves an Output's value; undefined when it is unknown (as in preview). */
export async function valueOf<T>(output: pulumiType.Output<T> | T): Promise<T | undefined> {
    if (!(output && typeof output === "object" && "isKnown" in output)) return output as T;
    const internal = output as unknown as { isKnown: Promise<boolean>; promise(): Promise<T> };
    return (await internal.isKnown) ? internal.promise() : undefined;
}
