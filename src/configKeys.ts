/**
 * Every stack config key of the `blog` namespace, in one table: the config reader reads only the
 * keys declared here (src/config.ts), refuses any other `blog:` key with the nearest one suggested,
 * and a unit test holds docs/configuration.md and Pulumi.yaml to this table.
 */

export type KeyType = "string" | "integer" | "boolean" | "object";

/** A key's concern: docs/configuration.md has one section for each, in this order. */
export const GROUPS = ["Host", "Machine you have", "DNS", "Cloudflare proxy", "Data volume", "Backups", "Deploy", "Secrets"] as const;
export type Group = (typeof GROUPS)[number];

export interface KeyDefinition {
    name: string;
    type: KeyType;
    /** The value the program uses when the key is not set; undefined: no default (empty, or required where it applies). */
    default?: string | number | boolean;
    group: Group;
    /** Set it with `pulumi config set --secret`. */
    secret?: boolean;
    /** Earlier names, still read for one release with a warning naming this key. */
    formerly?: string[];
}

export const CONFIG_KEYS: readonly KeyDefinition[] = [
    { name: "host", type: "string", default: "hetzner", group: "Host" },
    { name: "serverType", type: "string", default: "cx23", group: "Host" },
    { name: "location", type: "string", default: "nbg1", group: "Host" },
    { name: "image", type: "string", default: "ubuntu-24.04", group: "Host" },
    { name: "backups", type: "boolean", default: false, group: "Host" },
    { name: "flake", type: "string", default: "./nix", group: "Host" },
    { name: "nixosConfiguration", type: "string", default: "blog", group: "Host" },

    { name: "hostIpv4", type: "string", group: "Machine you have" },
    { name: "hostIpv6", type: "string", group: "Machine you have" },
    { name: "sshPort", type: "integer", default: 22, group: "Machine you have" },
    { name: "hostKey", type: "string", group: "Machine you have" },
    { name: "install", type: "boolean", default: false, group: "Machine you have" },
    { name: "installHostKey", type: "string", group: "Machine you have" },
    { name: "wipeDiskOf", type: "string", group: "Machine you have" },

    { name: "dns", type: "string", default: "cloudflare", group: "DNS" },
    { name: "cloudflareZoneId", type: "string", group: "DNS" },
    { name: "ttl", type: "integer", default: 1, group: "DNS" },

    { name: "proxied", type: "boolean", default: false, group: "Cloudflare proxy" },
    { name: "manageSslMode", type: "boolean", default: false, group: "Cloudflare proxy" },
    { name: "httpFromCloudflareOnly", type: "boolean", default: false, group: "Cloudflare proxy" },

    { name: "dataVolumeSize", type: "integer", default: 0, group: "Data volume", formerly: ["volumeSize"] },
    { name: "dataVolumeId", type: "string", group: "Data volume" },
    { name: "dataVolumeDeleteOnDestroy", type: "boolean", default: false, group: "Data volume", formerly: ["deleteDataOnDestroy"] },

    { name: "backupTarget", type: "string", default: "none", group: "Backups" },
    { name: "backupStorageBoxId", type: "string", group: "Backups" },
    { name: "backupStorageBoxHostKey", type: "string", group: "Backups" },
    { name: "backupS3Endpoint", type: "string", group: "Backups" },
    { name: "backupS3Bucket", type: "string", group: "Backups" },
    { name: "backupS3Region", type: "string", group: "Backups" },
    { name: "backupS3AccessKeyId", type: "string", group: "Backups", secret: true },
    { name: "backupS3SecretAccessKey", type: "string", group: "Backups", secret: true },
    { name: "backupPassword", type: "string", group: "Backups", secret: true },

    { name: "systemClosure", type: "string", group: "Deploy" },
    { name: "sshPrivateKey", type: "string", group: "Deploy", secret: true },
    { name: "allowRemovingLoginKey", type: "string", group: "Deploy" },

    { name: "hostSecrets", type: "object", group: "Secrets", secret: true },
];

/** Facts of the NixOS host file (`blog.host.*`): a stack key of that name is a mistake worth explaining. */
export const HOST_FACTS = ["domain", "acmeEmail", "adminSshKeys", "system", "platform", "disk", "tls", "dataVolume"] as const;

/** The definition of a key by its current or former name. */
export function keyDefinition(name: string): KeyDefinition | undefined {
    return CONFIG_KEYS.find((k) => k.name === name || (k.formerly ?? []).includes(name));
}

/** Levenshtein distance (insertions, deletions, substitutions), case-insensitive. */
export function editDistance(a: string, b: string): number {
    const s = a.toLowerCase();
    const t = b.toLowerCase();
    let previous = Array.from({ length: t.length + 1 }, (_, j) => j);
    for (let i = 1; i <= s.length; i++) {
        const current = [i];
        for (let j = 1; j <= t.length; j++) {
            current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (s[i - 1] === t[j - 1] ? 0 : 1));
        }
        previous = current;
    }
    return previous[t.length];
}

/** The known key nearest to an unknown one, when it is near enough to be a likely typo. */
export function nearestKey(name: string): string | undefined {
    let best: { name: string; distance: number } | undefined;
    for (const k of CONFIG_KEYS) {
        const d = editDistance(name, k.name);
        if (best === undefined || d < best.distance) best = { name: k.name, distance: d };
    }
    if (best === undefined) return undefined;
    // A third of the name's length, at least 2: "serverTyp" -> serverType, "ttls" -> ttl, not "foo" -> dns.
    return best.distance <= Math.max(2, Math.floor(name.length / 3)) ? best.name : undefined;
}

/** What an unknown `blog:` key should have been: the expectation text of its problem. */
export function unknownKeyExpectation(name: string): string {
    if ((HOST_FACTS as readonly string[]).includes(name)) {
        return `no such stack key: ${name} is a fact of the NixOS host file (blog.host.${name} in nix/hosts/<host>.nix); remove it with \`pulumi config rm ${name}\``;
    }
    const near = nearestKey(name);
    return near !== undefined
        ? `no such stack key; did you mean ${near}? (\`pulumi config rm ${name}\`, then \`pulumi config set ${near} <value>\`; see docs/configuration.md)`
        : `no such stack key (\`pulumi config rm ${name}\`; the keys are listed in docs/configuration.md)`;
}
