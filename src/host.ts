import { BACKUP_SECRETS, InputProblem, ORIGIN_SECRETS, STACK_SECRETS, STORE_PATH, StackConfig, failOn } from "./config";
import { ADMIN_KEY_TYPES, fingerprint, keyId, parsePublicKey, publicKeyProblem } from "./keys";
import { evalAttribute, evaluateFlake, toplevelAttribute } from "./nixEval";

/** The host's facts, declared by the flake's host-facts module (`blog.host`) and set in the host file. */
export interface HostFacts {
    /** Fully qualified domain the site answers on; the DNS records and the health check use it. */
    domain: string;
    /** Contact address for the ACME account. */
    acmeEmail: string;
    /** OpenSSH public keys allowed to log in as root (NixOS puts them into root's authorized keys). */
    adminSshKeys: string[];
    /** Nix system of the host: x86_64-linux or aarch64-linux. */
    system: "x86_64-linux" | "aarch64-linux";
    /** What the host runs on: a Hetzner Cloud server, or any other machine (its own hardware configuration). */
    platform: "hetzner-cloud" | "generic";
    /** The disk nixos-anywhere installs on, by a stable path; null on a host the stack does not install. */
    disk: string | null;
    /** The site's certificate: Let's Encrypt by HTTP-01, or the Cloudflare Origin CA certificate the stack delivers (proxied). */
    tls: "acme" | "cloudflare-origin";
    /** Whether the services keep their state on a separate disk labelled blog-data (a Hetzner Volume the stack attaches). */
    dataVolume: boolean;
}

/** What one evaluation of the flake yields. */
export interface HostEvaluation {
    host: HostFacts;
    /** Names of the secrets the configuration's services read (`blog.secrets`), which the deploy must deliver. */
    secrets: string[];
    /** What the host's backup job copies (`blog.backup.paths`: the data volume or the state directories, and extra paths). */
    backupPaths: string[];
    /** Store path of `config.system.build.toplevel`. */
    toplevel: string;
    /** What the plan should say about the combination, without refusing it. */
    warnings: string[];
}

const SYSTEMS = ["x86_64-linux", "aarch64-linux"] as const;
const PLATFORMS = ["hetzner-cloud", "generic"] as const;
const TLS_MODES = ["acme", "cloudflare-origin"] as const;
/** Names of a disk that stay the same across reboots and attached volumes (not /dev/sdX). */
const STABLE_DISK = /^\/dev\/disk\/by-(id|path|uuid|partuuid|diskseq)\/[^\s/]+$/;
/** Domains reserved for documentation (RFC 2606): the example host's, never a real site's. */
const EXAMPLE_DOMAIN = /(^|\.)example\.(com|net|org)$/;

/** Why a domain is not a fully qualified name we can serve, or undefined when it is. */
export function domainProblem(domain: string): string | undefined {
    const fqdn =
        domain.length <= 253 &&
        /^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.[a-z]{2,63}$/.test(domain);
    if (!fqdn) return "a fully qualified lowercase domain without a trailing dot, such as blog.example.org";
    if (EXAMPLE_DOMAIN.test(domain)) {
        return "your own domain: this is the example host's placeholder (set blog.host.domain in the host file)";
    }
    return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Checks what the flake evaluated to, and that it fits the stack's config; throws one error
 * that lists every problem, naming the option in the flake, its value and what was expected.
 */
export function checkEvaluation(raw: unknown, config: StackConfig): HostEvaluation {
    const where = evalAttribute(config.flake, config.nixosConfiguration);
    const problems: InputProblem[] = [];
    const option = (name: string) => `${where}.config.blog.host.${name}`;
    const host: Record<string, unknown> = isRecord(raw) && isRecord(raw.host) ? { ...raw.host } : {};
    const toplevel = isRecord(raw) ? raw.toplevel : undefined;

    const domain = host.domain;
    const domainWhy = typeof domain === "string" ? domainProblem(domain) : "a string";
    if (domainWhy) problems.push(new InputProblem(option("domain"), domain, domainWhy));

    const email = host.acmeEmail;
    if (typeof email !== "string" || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) {
        problems.push(new InputProblem(option("acmeEmail"), email, "an e-mail address for the ACME account"));
    } else if (EXAMPLE_DOMAIN.test(email.split("@")[1])) {
        problems.push(
            new InputProblem(option("acmeEmail"), email, "your own address: ACME refuses example domains"),
        );
    }

    const keys = host.adminSshKeys;
    if (!Array.isArray(keys) || keys.length === 0) {
        problems.push(new InputProblem(option("adminSshKeys"), keys, "a non-empty list of OpenSSH public keys"));
    } else {
        keys.forEach((key, i) => {
            const why = typeof key === "string" ? publicKeyProblem(key, ADMIN_KEY_TYPES) : "a string";
            if (why) problems.push(new InputProblem(`${option("adminSshKeys")}[${i}]`, key, why));
        });
        if (problems.length === 0) problems.push(...loginKeyProblems(keys as string[], config, option));
    }

    // Whether the server type runs this system is Hetzner's to say (preflight.ts).
    const system = host.system;
    if (typeof system !== "string" || !(SYSTEMS as readonly string[]).includes(system)) {
        problems.push(new InputProblem(option("system"), system, `one of ${SYSTEMS.join(", ")}`));
    }

    problems.push(...platformProblems(host, config, option));

    // Flakes from before these facts existed have neither: Let's Encrypt, no volume.
    host.tls ??= "acme";
    host.dataVolume ??= false;
    const warnings: string[] = [];
    problems.push(...tlsProblems(host, config, option, warnings));
    problems.push(...dataVolumeProblems(host, config, option));
    const secrets = isRecord(raw) && Array.isArray(raw.secrets) ? raw.secrets.filter((s): s is string => typeof s === "string") : [];
    problems.push(...secretProblems(secrets, config, warnings));
    const backupPaths = isRecord(raw) && Array.isArray(raw.backupPaths) ? raw.backupPaths.filter((s): s is string => typeof s === "string") : [];
    problems.push(...backupProblems(backupPaths, host, config, where, warnings));

    if (typeof toplevel !== "string" || !STORE_PATH.test(toplevel)) {
        problems.push(
            new InputProblem(toplevelAttribute(config.flake, config.nixosConfiguration), toplevel, "a Nix store path"),
        );
    }

    failOn(problems, `The host facts in ${where} cannot be deployed:`);
    return { host: host as unknown as HostFacts, secrets, backupPaths, toplevel: toplevel as string, warnings };
}

type Option = (name: string) => string;

/**
 * The deploy logs in as root with blog:sshPrivateKey, and root's keys are the admin keys: a list
 * without its public half locks the deploy out after the next switch (and the owner too, if it
 * was their only key). Refused, with the safe order, unless blog:allowRemovingLoginKey names that
 * key (another way in). Without sshPrivateKey the deploy uses the operator's ssh-agent or default
 * identity files, which the program cannot see: nothing is checked then.
 */
export function loginKeyProblems(keys: string[], config: StackConfig, option: Option): InputProblem[] {
    const login = config.loginKey;
    if (login === undefined) return [];
    const id = keyId(login);
    if (keys.some((k) => keyId(parsePublicKey(k, ADMIN_KEY_TYPES)) === id)) return [];
    const print = fingerprint(login);
    if (config.allowRemovingLoginKey === print) return [];
    return [
        new InputProblem(
            option("adminSshKeys"),
            keys,
            `a list that keeps the key the deploy logs in with (blog:sshPrivateKey, ${login.type} ${print}): without it the ` +
                "next deploy cannot log in. Rotate it in three steps, one `pulumi up` each: add the new public key to " +
                "adminSshKeys; set sshPrivateKey to the new private key (`pulumi config set --secret sshPrivateKey < new_key`); " +
                "then remove the old public key. If you have another way in and mean to drop it, confirm with " +
                `\`pulumi config set allowRemovingLoginKey ${print}\``,
        ),
    ];
}

/**
 * The certificate the host serves must be one visitors trust: an Origin CA certificate only
 * behind Cloudflare's proxy. Let's Encrypt behind the proxy works (Full strict accepts it): the
 * first step of switching to the Origin CA certificate, or back from it.
 */
function tlsProblems(host: Record<string, unknown>, config: StackConfig, option: Option, warnings: string[]): InputProblem[] {
    if (!(TLS_MODES as readonly unknown[]).includes(host.tls)) {
        return [new InputProblem(option("tls"), host.tls, `one of ${TLS_MODES.join(", ")}`)];
    }
    if (host.tls === "cloudflare-origin" && !config.proxied) {
        return [
            new InputProblem(
                option("tls"),
                host.tls,
                'acme while blog:proxied is false: browsers reach the host directly and do not trust a Cloudflare Origin CA certificate (to leave proxied mode, set tls = "acme" and deploy first, then blog:proxied false; docs/configuration.md, Behind Cloudflare\'s proxy)',
            ),
        ];
    }
    if (host.tls === "acme" && config.proxied) {
        warnings.push(
            "blog:proxied is true and the host keeps its Let's Encrypt certificate (blog.host.tls is acme): Cloudflare's Full (strict) " +
                'accepts it. Once every resolver has the proxied records (the old TTL has passed), set blog.host.tls = "cloudflare-origin" ' +
                "and `pulumi up` again to serve the Origin CA certificate the stack holds ready.",
        );
    }
    return [];
}

/** A host that keeps its state on a volume, and a stack that attaches one, go together on Hetzner. */
function dataVolumeProblems(host: Record<string, unknown>, config: StackConfig, option: Option): InputProblem[] {
    if (typeof host.dataVolume !== "boolean") return [new InputProblem(option("dataVolume"), host.dataVolume, "true or false")];
    if (config.host !== "hetzner") return [];
    const attached = config.volumeSize > 0 || config.dataVolumeId !== undefined;
    if (host.dataVolume && !attached) {
        return [
            new InputProblem(
                "blog:dataVolumeSize",
                0,
                "a size in GB from 10 to 10240 (`pulumi config set dataVolumeSize 10`), or blog:dataVolumeId for a volume you have: " +
                    "the configuration sets blog.host.dataVolume, so its services wait for a volume labelled blog-data, which the stack attaches",
            ),
        ];
    }
    if (!host.dataVolume && attached) {
        const which = config.dataVolumeId !== undefined ? `blog:dataVolumeId (${config.dataVolumeId})` : `blog:dataVolumeSize (${config.volumeSize})`;
        return [
            new InputProblem(
                option("dataVolume"),
                false,
                `true, as ${which} attaches a volume: without it the configuration does not mount the volume, ` +
                    "and the services' state would stay on the server's disk, lost with the server",
            ),
        ];
    }
    return [];
}

/** Every secret the configuration's services read is in the stack config; the stack's own come with proxied mode. */
function secretProblems(declared: string[], config: StackConfig, warnings: string[]): InputProblem[] {
    const provided = new Set(Object.keys(config.hostSecrets));
    const fromStack = new Set<string>([
        ...(config.proxied ? ORIGIN_SECRETS : []),
        ...(config.backup.target.kind !== "none" ? BACKUP_SECRETS : []),
    ]);
    const problems = declared
        .filter((name) => !provided.has(name) && !fromStack.has(name))
        .map((name) =>
            (ORIGIN_SECRETS as readonly string[]).includes(name)
                ? new InputProblem(`blog.secrets.${name}`, null, `blog:proxied true: the stack delivers ${name} in proxied mode only`)
                : (STACK_SECRETS as readonly string[]).includes(name)
                ? new InputProblem(`blog.secrets.${name}`, null, `a blog:backupTarget other than none: the stack delivers ${name} with backups only`)
                : new InputProblem(
                      `blog:hostSecrets.${name}`,
                      null,
                      `a value: the configuration's services read this secret (\`pulumi config set --secret --path 'hostSecrets.${name}' <value>\`)`,
                  ),
        );
    const unused = [...provided].filter((name) => !declared.includes(name));
    if (unused.length > 0) {
        warnings.push(
            `blog:hostSecrets has ${unused.join(", ")}, which no service of the configuration declares (blog.secrets): ` +
                "delivered to /var/lib/blog-secrets all the same",
        );
    }
    return problems;
}

/**
 * Backups need something to copy: the data volume, or without one the services' state directories
 * on the root disk (`blog.data.directories`), and the paths the host file adds
 * (`blog.backup.extraPaths`); nix/modules/backup.nix computes the list as `blog.backup.paths`.
 */
function backupProblems(paths: string[], host: Record<string, unknown>, config: StackConfig, where: string, warnings: string[]): InputProblem[] {
    if (config.backup.target.kind === "none") return [];
    if (paths.length === 0) {
        return [
            new InputProblem(
                "blog:backupTarget",
                config.backup.target.kind,
                `none, as ${where}.config.blog.backup.paths is empty: the host has no data volume (blog.host.dataVolume), no state ` +
                    "directories (blog.data.directories) and no blog.backup.extraPaths, so a backup would copy nothing",
            ),
        ];
    }
    if (host.dataVolume !== true) {
        warnings.push(
            `backups copy ${paths.join(", ")} from the server's own disk (no data volume): they cover a lost server too, ` +
                "but a restore onto a new server needs its services' state directories at the same paths.",
        );
    }
    return [];
}

/**
 * Whether the configuration is built for where the host comes from: a Hetzner server needs the
 * Hetzner Cloud platform (its disk, guest drivers, IPv6 from the metadata service); a machine nixos-anywhere installs
 * elsewhere needs its disk named by a stable path, since the install erases it.
 */
function platformProblems(host: Record<string, unknown>, config: StackConfig, option: (name: string) => string): InputProblem[] {
    const problems: InputProblem[] = [];
    const platform = host.platform;
    if (typeof platform !== "string" || !(PLATFORMS as readonly string[]).includes(platform)) {
        return [new InputProblem(option("platform"), platform, `one of ${PLATFORMS.join(", ")}`)];
    }
    if (config.host === "hetzner" && platform !== "hetzner-cloud") {
        problems.push(
            new InputProblem(
                option("platform"),
                platform,
                'hetzner-cloud for a Hetzner server (blog:host is "hetzner"): pick a configuration built for Hetzner Cloud, or set blog:host to existing',
            ),
        );
    }
    const disk = host.disk;
    const installsElsewhere = config.host === "existing" && config.existing?.install === true && platform === "generic";
    if (disk !== null && disk !== undefined && (typeof disk !== "string" || !STABLE_DISK.test(disk))) {
        problems.push(
            new InputProblem(option("disk"), disk, "a stable disk path such as /dev/disk/by-id/nvme-... (ls -l /dev/disk/by-id on the machine), never /dev/sdX"),
        );
    } else if (installsElsewhere && (disk === null || disk === undefined)) {
        problems.push(
            new InputProblem(
                option("disk"),
                disk,
                "the disk nixos-anywhere erases and installs on, by a stable path such as /dev/disk/by-id/nvme-... " +
                    "(blog:install is true; find it with ls -l /dev/disk/by-id on the machine)",
            ),
        );
    }
    return problems;
}

/** Evaluates the flake once and checks the result; see nixEval.ts for the one command it runs. */
export function evaluateHost(config: StackConfig): HostEvaluation {
    return checkEvaluation(evaluateFlake(config.flake, config.nixosConfiguration), config);
}
