import { isIPv4, isIPv6 } from "net";
import * as pulumi from "@pulumi/pulumi";
import { BackupConfig, readBackupConfig } from "./backupConfig";
import { CONFIG_KEYS, keyDefinition, unknownKeyExpectation } from "./configKeys";
import { HOST_KEY_TYPES, PublicKey, publicKeyOfPrivate, publicKeyProblem } from "./keys";

/** A machine the stack does not create: its addresses, SSH port, and how the stack trusts it. */
export interface ExistingHost {
    /** Public IPv4 address (for the A record and every connection); at least one address is set. */
    ipv4?: string;
    /** Public IPv6 address (for the AAAA record; connections use it when there is no IPv4). */
    ipv6?: string;
    /** SSH port. */
    sshPort: number;
    /** The machine's current SSH host key line: no install; every connection is checked against it. */
    hostKey?: string;
    /** Install NixOS with nixos-anywhere (wipes the disk), placing the stack's generated host key. */
    install: boolean;
    /** With `install`: the host key the machine presents now, before the install (read out of band); the install's first connection pins it. */
    installHostKey?: string;
}

/** The stack's own settings (project namespace `blog`). Host facts live in the flake, not here. */
export interface StackConfig {
    /** Where the host comes from: a new Hetzner Cloud server, or a machine you already have. */
    host: "hetzner" | "existing";
    /** The machine, when `host` is `existing`. */
    existing?: ExistingHost;
    /** Where the DNS records live: Cloudflare, Hetzner's DNS, or nowhere (you create them). */
    dns: "cloudflare" | "hetzner" | "none";
    /** Cloudflare zone that holds the site's domain: 32 lowercase hex digits ("" unless `dns` is cloudflare). */
    cloudflareZoneId: string;
    /** Hetzner Cloud server type, e.g. `cx23` (x86) or `cax11` (Arm). */
    serverType: string;
    /** Hetzner Cloud location, e.g. `nbg1`, `fsn1`, `hel1`, `ash`, `hil`, `sin`. */
    location: string;
    /** Stock image the server boots before nixos-anywhere kexecs into the installer. */
    image: string;
    /** Flake reference that holds the NixOS configuration. */
    flake: string;
    /** Name under `nixosConfigurations` in that flake. */
    nixosConfiguration: string;
    /** Whether Cloudflare proxies the records (dns cloudflare only); the host's `tls` fact says which certificate it serves. */
    proxied: boolean;
    /** Proxied: the stack sets the zone's SSL mode to Full (strict) instead of refusing when it is not. */
    manageSslMode: boolean;
    /** Proxied, Hetzner: the firewall admits HTTP and HTTPS from Cloudflare's addresses only. */
    httpFromCloudflareOnly: boolean;
    /** Size in GB of the Hetzner Volume that holds the services' state; 0: no volume. */
    volumeSize: number;
    /** A Hetzner Volume you have (its id), used as the data volume; never deleted by the stack. */
    dataVolumeId?: string;
    /** Whether `pulumi destroy` (or removing the volume from the stack) deletes the volume and its data. */
    deleteDataOnDestroy: boolean;
    /** Hetzner's daily server backups (7 kept; 20% of the server's price). */
    backups: boolean;
    /** Secrets the deploy delivers to the host, outside the Nix store (`hostSecrets.<name>`, each a secret). */
    hostSecrets: Record<string, pulumi.Output<string>>;
    /** DNS TTL in seconds; 1 means Cloudflare's "automatic". */
    ttl: number;
    /** A prebuilt system closure to deploy instead of the evaluated one. */
    systemClosure?: string;
    /** Private key the commands log in with, instead of the operator's ssh-agent. */
    sshPrivateKey?: pulumi.Output<string>;
    /** The public half of sshPrivateKey: the key the install and the deploy log in with. */
    loginKey?: PublicKey;
    /** The fingerprint of a login key the admin keys may leave out (you have another way in). */
    allowRemovingLoginKey?: string;
    /** Where restic keeps the host's backups (`backup*` keys; src/backupConfig.ts). */
    backup: BackupConfig;
}

/**
 * Defaults by StackConfig field, the same as CONFIG_KEYS declares for the keys (src/configKeys.ts;
 * `volumeSize` is the key dataVolumeSize, `deleteDataOnDestroy` the key dataVolumeDeleteOnDestroy).
 */
export const configDefaults = {
    host: "hetzner",
    dns: "cloudflare",
    sshPort: 22,
    install: false,
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
    backupTarget: "none",
} as const;

/** A host secret's name: a systemd credential name and a file name, and part of an environment variable's. */
export const SECRET_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/** Secrets the stack itself delivers in proxied mode (see origin.ts). */
export const ORIGIN_SECRETS = ["cloudflareOriginCert", "cloudflareOriginKey", "cloudflareRealIp"] as const;

/** Secrets the stack itself delivers with backups on (see backup.ts). */
export const BACKUP_SECRETS = ["backupRepository", "backupPassword", "backupEnvironment"] as const;

/** The stack's own secrets: no `hostSecrets` entry may take these names. */
export const STACK_SECRETS = [...ORIGIN_SECRETS, ...BACKUP_SECRETS] as const;

export const NAMESPACE = "blog";

/** A store path as Nix prints it: /nix/store/<32 base-32 characters>-<name>. */
export const STORE_PATH = /^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]+$/;

/** One problem with one input, phrased as: input, value, what was expected. */
export class InputProblem {
    constructor(
        readonly input: string,
        readonly value: unknown,
        readonly expected: string,
    ) {}

    toString(): string {
        const got = this.value === null || this.value === undefined ? "nothing" : JSON.stringify(this.value);
        return `${this.input}: got ${got}; expected ${this.expected}`;
    }
}

/** Fails the program (preview included) listing every problem at once, before any resource exists. */
export function failOn(problems: InputProblem[], heading: string): void {
    if (problems.length > 0) {
        throw new pulumi.RunError(`${heading}\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    }
}

// Each check returns the expectation text when the value is wrong, undefined when it is right.
type Check<T> = (value: T) => string | undefined;

const zoneIdCheck: Check<string> = (v) =>
    /^[0-9a-f]{32}$/.test(v)
        ? undefined
        : "a Cloudflare zone id: 32 lowercase hexadecimal characters (dashboard > your domain > Overview > API)";

const serverTypeCheck: Check<string> = (v) =>
    /^[a-z]{2,4}[0-9]{1,3}[a-z]?$/.test(v)
        ? undefined
        : "a Hetzner Cloud server type such as cx23, cpx22 or cax11 (see `hcloud server-type list`)";

const locationCheck: Check<string> = (v) =>
    /^[a-z]{3}[0-9]?$/.test(v)
        ? undefined
        : "a Hetzner Cloud location such as nbg1, fsn1, hel1, ash, hil or sin";

const imageCheck: Check<string> = (v) =>
    /^[a-z0-9][a-z0-9.-]{0,62}$/.test(v)
        ? undefined
        : "a Hetzner Cloud image name such as ubuntu-24.04 or debian-12 (nixos-anywhere kexecs from it)";

const flakeCheck: Check<string> = (v) =>
    v.length > 0 && !/[\s#]/.test(v) ? undefined : "a flake reference without spaces or '#', such as ./nix";

const configurationCheck: Check<string> = (v) =>
    /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(v) ? undefined : "a nixosConfigurations attribute name such as blog";

const hostCheck: Check<string> = (v) =>
    v === "hetzner" || v === "existing" ? undefined : "hetzner (a new Hetzner Cloud server) or existing (a machine you have)";

const dnsCheck: Check<string> = (v) =>
    ["cloudflare", "hetzner", "none"].includes(v)
        ? undefined
        : "cloudflare, hetzner (Hetzner's DNS, in the Cloud API) or none (you create the records)";

const ipv4Check: Check<string> = (v) => (isIPv4(v) ? undefined : "an IPv4 address such as 203.0.113.7");

const ipv6Check: Check<string> = (v) => (isIPv6(v) ? undefined : "an IPv6 address such as 2001:db8::7");

const portCheck: Check<number> = (v) => (Number.isInteger(v) && v >= 1 && v <= 65535 ? undefined : "a TCP port from 1 to 65535");

const hostKeyCheck: Check<string> = (v) => {
    const why = publicKeyProblem(v, HOST_KEY_TYPES);
    return why === undefined
        ? undefined
        : "the machine's SSH host key line as `ssh-keyscan -t ed25519 <address>` prints it without the address " +
              `("ssh-ed25519 AAAA..."); ${why}`;
};

const ttlCheck: Check<number> = (v) =>
    Number.isInteger(v) && (v === 1 || (v >= 60 && v <= 86400))
        ? undefined
        : "1 (automatic) or a whole number of seconds from 60 to 86400";

/** Hetzner Volumes: 10 GB to 10 TB (docs.hetzner.cloud, "Create a Volume": size, 10 to 10240). */
const volumeSizeCheck: Check<number> = (v) =>
    Number.isInteger(v) && (v === 0 || (v >= 10 && v <= 10240))
        ? undefined
        : "0 (no new data volume) or a size in GB from 10 to 10240";

const closureCheck: Check<string> = (v) =>
    STORE_PATH.test(v) ? undefined : "a Nix store path such as /nix/store/<hash>-nixos-system-blog-<version>";

function parseBoolean(raw: string): boolean | undefined {
    return raw === "true" ? true : raw === "false" ? false : undefined;
}

function parseInteger(raw: string): number | undefined {
    return /^-?[0-9]+$/.test(raw.trim()) ? Number(raw.trim()) : undefined;
}

const privateKeyCheck: Check<string> = (v) =>
    /^-----BEGIN (OPENSSH|RSA|EC) PRIVATE KEY-----\n[\s\S]+\n-----END (OPENSSH|RSA|EC) PRIVATE KEY-----\s*$/.test(v)
        ? undefined
        : "an unencrypted OpenSSH private key (the whole file, e.g. `pulumi config set --secret sshPrivateKey < ~/.ssh/deploy_ed25519`)";

/** Whether the CLI handed this key over as a secret (`pulumi config set --secret`); true when unknown. */
function isSecretConfig(fullKey: string): boolean {
    // Not in the SDK's typings; the language host lists secret keys for it.
    const runtimeConfig = require("@pulumi/pulumi/runtime/config") as { isConfigSecret?: (k: string) => boolean };
    return typeof runtimeConfig.isConfigSecret === "function" ? runtimeConfig.isConfigSecret(fullKey) : true;
}

/** Stands in for a secret in an error message: its shape, never its text. */
function redacted(value: string): string {
    return `[secret, ${value.length} characters]`;
}

/**
 * Reads and validates every key of the `blog` namespace. Throws one error that lists every
 * bad key with its value and what was expected.
 */
export function readStackConfig(cfg: pulumi.Config = new pulumi.Config(NAMESPACE)): StackConfig {
    const problems: InputProblem[] = [];
    const key = (name: string) => `${NAMESPACE}:${name}`;
    const given = (name: string): string | undefined => {
        const value = cfg.get(name);
        return value === undefined || value === "" ? undefined : value;
    };
    const warned = new Set<string>();
    /** A key's value; only keys CONFIG_KEYS declares are read, a former name with a warning naming the new one. */
    const raw = (name: string): string | undefined => {
        const definition = CONFIG_KEYS.find((k) => k.name === name);
        if (definition === undefined) throw new Error(`readStackConfig: ${name} is not in CONFIG_KEYS (src/configKeys.ts)`);
        const value = given(name);
        for (const former of definition.formerly ?? []) {
            const old = given(former);
            if (old === undefined) continue;
            // Pulumi.yaml's default fills the new name in when it is not set: only another value is a conflict.
            if (value !== undefined && value !== String(definition.default) && value !== old) {
                problems.push(
                    new InputProblem(key(former), old, `unset: it is the former name of ${key(name)}, which is set too (to ${JSON.stringify(value)}); \`pulumi config rm ${former}\``),
                );
                return value;
            }
            if (!warned.has(former)) {
                warned.add(former);
                pulumi.log.warn(
                    `${key(former)} is now called ${key(name)}; the old name is read for one more release. ` +
                        `Rename it: \`pulumi config set ${name} ${old} && pulumi config rm ${former}\``,
                );
            }
            return old;
        }
        return value;
    };
    unknownKeys();

    function text(name: string, check: Check<string>, fallback: string): string {
        const value = raw(name) ?? fallback;
        const expected = check(value);
        if (expected) problems.push(new InputProblem(key(name), value, expected));
        return value;
    }

    function required(name: string, check: Check<string>): string {
        const value = raw(name);
        if (value === undefined) {
            problems.push(new InputProblem(key(name), null, `${check("")}; set it with \`pulumi config set ${name} <value>\``));
            return "";
        }
        return text(name, check, value);
    }

    function optional(name: string, check: Check<string>): string | undefined {
        const value = raw(name);
        return value === undefined ? undefined : text(name, check, value);
    }

    function flag(name: string, fallback: boolean, check: Check<boolean> = () => undefined): boolean {
        const value = raw(name);
        if (value === undefined) return fallback;
        const parsed = parseBoolean(value);
        const expected = parsed === undefined ? "true or false" : check(parsed);
        if (expected) problems.push(new InputProblem(key(name), value, expected));
        return parsed ?? fallback;
    }

    function integer(name: string, fallback: number, check: Check<number>): number {
        const value = raw(name);
        if (value === undefined) return fallback;
        const parsed = parseInteger(value);
        const expected = check(parsed ?? Number.NaN);
        if (expected) problems.push(new InputProblem(key(name), value, expected));
        return parsed ?? fallback;
    }

    /** Every `blog:` key the program does not know: refused, with the nearest known key suggested. */
    function unknownKeys(): void {
        const prefix = `${NAMESPACE}:`;
        for (const [full, value] of Object.entries(pulumi.runtime.allConfig())) {
            if (!full.startsWith(prefix)) continue;
            const name = full.slice(prefix.length);
            if (keyDefinition(name) !== undefined) continue;
            problems.push(new InputProblem(full, isSecretConfig(full) ? redacted(value) : value, unknownKeyExpectation(name)));
        }
    }

    const host = text("host", hostCheck, configDefaults.host) as StackConfig["host"];
    const dns = text("dns", dnsCheck, configDefaults.dns) as StackConfig["dns"];
    const config: StackConfig = {
        host,
        dns,
        cloudflareZoneId: dns === "cloudflare" ? required("cloudflareZoneId", zoneIdCheck) : "",
        serverType: text("serverType", serverTypeCheck, configDefaults.serverType),
        location: text("location", locationCheck, configDefaults.location),
        image: text("image", imageCheck, configDefaults.image),
        flake: text("flake", flakeCheck, configDefaults.flake),
        nixosConfiguration: text("nixosConfiguration", configurationCheck, configDefaults.nixosConfiguration),
        proxied: flag("proxied", configDefaults.proxied, dns === "cloudflare" ? undefined : (v) => (v ? "false: only Cloudflare proxies records" : undefined)),
        manageSslMode: flag("manageSslMode", configDefaults.manageSslMode),
        httpFromCloudflareOnly: flag("httpFromCloudflareOnly", configDefaults.httpFromCloudflareOnly),
        volumeSize: integer("dataVolumeSize", configDefaults.volumeSize, volumeSizeCheck),
        deleteDataOnDestroy: flag("dataVolumeDeleteOnDestroy", configDefaults.deleteDataOnDestroy),
        backups: flag("backups", configDefaults.backups),
        ttl: integer("ttl", configDefaults.ttl, ttlCheck),
        hostSecrets: readHostSecrets(),
        backup: readBackupConfig({
            raw,
            problem: (name, value, expected) => problems.push(new InputProblem(key(name), value, expected)),
            isSecret: (name) => isSecretConfig(key(name)),
        }),
    };
    const hetznerOnly = (name: "dataVolumeSize" | "backups" | "httpFromCloudflareOnly", set: boolean) => {
        if (set && host !== "hetzner") {
            const fallback = name === "dataVolumeSize" ? configDefaults.volumeSize : configDefaults[name];
            problems.push(new InputProblem(key(name), raw(name), `${fallback}: it applies to a Hetzner server the stack creates (blog:host is ${host})`));
        }
    };
    const volumeId = optional("dataVolumeId", (v) => (/^[1-9][0-9]{0,18}$/.test(v) ? undefined : "a Hetzner volume id: digits only (`hcloud volume list`)"));
    if (volumeId !== undefined) {
        config.dataVolumeId = volumeId;
        if (host !== "hetzner") {
            problems.push(new InputProblem(key("dataVolumeId"), volumeId, `nothing: it applies to a Hetzner server the stack creates (blog:host is ${host})`));
        }
        if (config.volumeSize > 0) {
            problems.push(
                new InputProblem(key("dataVolumeSize"), config.volumeSize, "0 when blog:dataVolumeId names the volume to use (one or the other: a new volume, or yours)"),
            );
        }
    }
    hetznerOnly("dataVolumeSize", config.volumeSize > 0);
    hetznerOnly("backups", config.backups);
    hetznerOnly("httpFromCloudflareOnly", config.httpFromCloudflareOnly);
    if (config.httpFromCloudflareOnly && !config.proxied) {
        problems.push(
            new InputProblem(key("httpFromCloudflareOnly"), "true", "false unless blog:proxied is true: visitors reach an unproxied host directly"),
        );
    }
    // A proxied record's TTL is Cloudflare's ("Auto", which the API writes as 1): the provider refuses
    // to create one with any other TTL, only after the server exists (terraform-provider-cloudflare
    // v5 internal/services/dns_record/resource.go Create: "ttl must be set to 1 when `proxied` is
    // true"; developers.cloudflare.com/dns/manage-dns-records/reference/ttl: "This value cannot be
    // edited"). Refused here, before anything is created.
    if (config.proxied && config.ttl !== 1 && ttlCheck(config.ttl) === undefined) {
        problems.push(
            new InputProblem(
                key("ttl"),
                raw("ttl"),
                "1 (automatic) while blog:proxied is true: Cloudflare keeps the TTL of a proxied record itself and " +
                    "refuses any other (`pulumi config set ttl 1`)",
            ),
        );
    }
    // Cloudflare stopped accepting Origin CA keys ("user service keys") on 2026-09-30: a provider
    // configured with one fails on the Origin CA certificate, after the server exists. The token
    // (cloudflare:apiToken, CLOUDFLARE_API_TOKEN) is the one credential; read without a secret warning.
    const serviceKey = pulumi.runtime.getConfig("cloudflare:apiUserServiceKey") || process.env.CLOUDFLARE_API_USER_SERVICE_KEY;
    if (dns === "cloudflare" && serviceKey) {
        problems.push(
            new InputProblem(
                "cloudflare:apiUserServiceKey",
                redacted(serviceKey),
                "nothing: Cloudflare stopped accepting Origin CA keys (service keys) on 2026-09-30; remove it " +
                    "(`pulumi config rm cloudflare:apiUserServiceKey`, or unset CLOUDFLARE_API_USER_SERVICE_KEY) and give " +
                    "cloudflare:apiToken the permission Zone > SSL and Certificates > Edit instead",
            ),
        );
    }
    if (config.manageSslMode && !config.proxied) {
        problems.push(new InputProblem(key("manageSslMode"), "true", "false unless blog:proxied is true: only proxied records use the zone's SSL mode"));
    }
    if (host === "existing") config.existing = readExistingHost();
    const closure = optional("systemClosure", closureCheck);
    if (closure !== undefined) config.systemClosure = closure;

    const sshKey = raw("sshPrivateKey");
    if (sshKey !== undefined) {
        const expected = privateKeyCheck(sshKey);
        if (expected) problems.push(new InputProblem(key("sshPrivateKey"), redacted(sshKey), expected));
        else if (!isSecretConfig(key("sshPrivateKey"))) {
            problems.push(
                new InputProblem(key("sshPrivateKey"), redacted(sshKey), "a secret: set it again with `pulumi config set --secret sshPrivateKey`"),
            );
        }
        config.sshPrivateKey = pulumi.secret(sshKey);
        if (!expected) {
            try {
                config.loginKey = publicKeyOfPrivate(sshKey);
            } catch (e) {
                problems.push(
                    new InputProblem(key("sshPrivateKey"), redacted(sshKey), `a private key whose public half can be read (${(e as Error).message.split("\n")[0]})`),
                );
            }
        }
    }
    config.allowRemovingLoginKey = optional("allowRemovingLoginKey", (v) =>
        /^SHA256:[A-Za-z0-9+/]{43}$/.test(v) ? undefined : "the fingerprint of the login key the admin keys may leave out, SHA256:<43 characters>",
    );

    failOn(problems, "Invalid stack configuration (fix with `pulumi config set <key> <value>`):");
    return config;

    /**
     * `hostSecrets`: an object of names to values (`pulumi config set --secret --path 'hostSecrets.<name>' <value>`).
     * Each value stays a Pulumi secret; an error shows its name and length, never its text.
     */
    function readHostSecrets(): Record<string, pulumi.Output<string>> {
        const text = raw("hostSecrets");
        if (text === undefined) return {};
        const name = key("hostSecrets");
        let parsed: unknown;
        try {
            parsed = JSON.parse(text);
        } catch {
            parsed = undefined;
        }
        const example = "`pulumi config set --secret --path 'hostSecrets.<name>' <value>`";
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
            problems.push(new InputProblem(name, redacted(text), `an object of secret names to values, set one at a time with ${example}`));
            return {};
        }
        // An empty object is what removing the last secret leaves: nothing to keep secret.
        if (Object.keys(parsed as object).length > 0 && !isSecretConfig(name)) {
            problems.push(new InputProblem(name, redacted(text), `secrets: set each value again with ${example}`));
        }
        const secrets: Record<string, pulumi.Output<string>> = {};
        for (const [secret, value] of Object.entries(parsed as Record<string, unknown>)) {
            const at = `${name}.${secret}`;
            if (!SECRET_NAME.test(secret)) {
                problems.push(new InputProblem(at, "[secret]", "a name of letters, digits and _ that starts with a letter, at most 64 characters"));
            } else if ((STACK_SECRETS as readonly string[]).includes(secret)) {
                problems.push(new InputProblem(at, "[secret]", `another name: ${STACK_SECRETS.join(", ")} are the stack's own (proxied mode, backups)`));
            } else if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
                problems.push(new InputProblem(at, `[secret, ${Array.isArray(value) ? "a list" : value === null ? "null" : "an object"}]`, `a text value: ${example}`));
            } else if (String(value).length === 0 || String(value).includes("\0")) {
                problems.push(new InputProblem(at, redacted(String(value)), "a non-empty value without NUL bytes"));
            } else {
                secrets[secret] = pulumi.secret(String(value));
            }
        }
        return secrets;
    }

    /** The keys of `host: existing`: an address, and either the host key or a confirmed install. */
    function readExistingHost(): ExistingHost {
        const existing: ExistingHost = {
            ipv4: optional("hostIpv4", ipv4Check),
            ipv6: optional("hostIpv6", ipv6Check),
            sshPort: integer("sshPort", configDefaults.sshPort, portCheck),
            hostKey: optional("hostKey", hostKeyCheck),
            install: flag("install", configDefaults.install),
            installHostKey: optional("installHostKey", hostKeyCheck),
        };
        if (existing.ipv4 === undefined && existing.ipv6 === undefined) {
            problems.push(
                new InputProblem(key("hostIpv4"), null, "the machine's public IPv4 address (or set hostIpv6): `pulumi config set hostIpv4 <address>`"),
            );
        }
        const address = existing.ipv4 ?? existing.ipv6 ?? "<address>";
        if (existing.hostKey === undefined && !existing.install) {
            problems.push(
                new InputProblem(
                    key("hostKey"),
                    null,
                    "the machine's SSH host key (`pulumi config set hostKey \"$(ssh-keyscan -t ed25519 " +
                        `${address} | cut -d' ' -f2-)\"\`, checked against a trusted source), or install: true to have ` +
                        "nixos-anywhere install it (this wipes its disk)",
                ),
            );
        }
        if (existing.hostKey !== undefined && existing.install) {
            problems.push(
                new InputProblem(key("install"), "true", "false when hostKey is set (an installed host gets the stack's own host key); unset one of them"),
            );
        }
        if (existing.install && existing.installHostKey === undefined) {
            problems.push(
                new InputProblem(
                    key("installHostKey"),
                    null,
                    "the host key the machine presents now, before the install, read out of band (its console, or your provider's " +
                        "panel; `ssh-keyscan` only over a path you trust): the install sends the host's private key to the machine " +
                        "that presents it, and accepts no other. `pulumi config set installHostKey \"ssh-ed25519 AAAA...\"`. For a " +
                        "machine the stack has installed already, it is the stack's own key: " +
                        "`pulumi config set installHostKey \"$(pulumi stack output hostKey)\"`",
                ),
            );
        }
        if (!existing.install && existing.installHostKey !== undefined) {
            problems.push(new InputProblem(key("installHostKey"), existing.installHostKey, "unset: it is the key an install pins, and install is false"));
        }
        if (existing.install) {
            const confirmation = raw("wipeDiskOf");
            if (confirmation !== address) {
                problems.push(
                    new InputProblem(
                        key("wipeDiskOf"),
                        confirmation ?? null,
                        `${JSON.stringify(address)}, the machine's address again, to confirm that nixos-anywhere erases its disk ` +
                            `(\`pulumi config set wipeDiskOf ${address}\`)`,
                    ),
                );
            }
        }
        return existing;
    }
}
