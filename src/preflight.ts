import { createHash } from "crypto";
import * as cloudflare from "@pulumi/cloudflare";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { InputProblem, NAMESPACE, failOn } from "./config";
import { HostFacts } from "./host";

/**
 * Checks that need the providers' answers (Hetzner's catalog, Cloudflare's zone). They run as
 * invokes, so in `pulumi preview` too, and everything the stack creates waits for them: a problem
 * fails preview and `up` before the first resource exists, with every problem in one message.
 */

/** nixos-anywhere's kexec installer needs this much RAM, swap not counted (its README). */
export const MIN_MEMORY_GB = 1.5;

/** Hetzner's names for the CPU architectures, as `getServerTypes` reports them. */
const ARCHITECTURE: Record<HostFacts["system"], string> = { "x86_64-linux": "x86", "aarch64-linux": "arm" };

/** The fields of a Hetzner server type these checks read (`hcloud.getServerTypes`). */
export type ServerTypeInfo = Pick<hcloud.types.output.GetServerTypesServerType, "name" | "architecture" | "memory" | "disk"> & {
    locations: Pick<
        hcloud.types.output.GetServerTypesServerTypeLocation,
        "name" | "available" | "isDeprecated" | "unavailableAfter"
    >[];
};

/** The fields of the stack's existing server these checks read (`hcloud.getServers`). */
export type CurrentServer = Pick<hcloud.types.output.GetServersServer, "serverType" | "location" | "primaryDiskSize"> & { id?: number };

/** What names a server to a person (`hcloud.getServers`; Hetzner's list has no creation date). */
export type ServerListing = Pick<hcloud.types.output.GetServersServer, "id" | "name" | "serverType" | "location" | "ipv4Address" | "status">;

/** A server as the checks know it: listed by its labels, judged by its type and location. */
export type StackServer = ServerListing & CurrentServer;

function describeServer(s: ServerListing): string {
    return `#${s.id} ${s.name} (${s.serverType} at ${s.location}, ${s.ipv4Address || "no IPv4"}, ${s.status})`;
}

/**
 * Which of the servers with the stack's labels the checks judge as the stack's server. One is the
 * rule. Two are what a replacement that failed half-way leaves (the new server is created first and
 * the old one deleted only at the end of an update that succeeded): the state marks the old one for
 * deletion, and the next `up` finishes the move. The checks then judge the one that fits the
 * configuration (its location, and a type of its architecture): that is the server the update keeps
 * (or, after the configuration went back, the one whose place it takes), so both give the same
 * answers; of two that fit (a failed `--replace`), the newer. Two of which neither fits, or more
 * than two, cannot be told apart: refused, naming them all and what to do.
 */
export function stackServer(
    servers: StackServer[],
    selector: string,
    wanted: { location: string; system: HostFacts["system"] },
    types: ServerTypeInfo[],
): { current?: StackServer; problems: InputProblem[]; warnings: string[] } {
    if (servers.length <= 1) return { current: servers[0], problems: [], warnings: [] };
    const fits = (s: StackServer) =>
        s.location === wanted.location && types.find((t) => t.name === s.serverType)?.architecture === ARCHITECTURE[wanted.system];
    const fitting = servers.filter(fits).sort((a, b) => b.id - a.id);
    const named = servers.map(describeServer);
    if (servers.length === 2 && fitting.length > 0) {
        return {
            current: fitting[0],
            problems: [],
            warnings: [
                `Two servers carry this stack's labels (${selector}): ${named.join(" and ")}. A replacement did not finish: ` +
                    "the stack's state marks the old server for deletion, and this update deletes it once the new one has passed its checks.",
            ],
        };
    }
    return {
        problems: [
            new InputProblem(
                `the Hetzner servers with the labels ${selector}`,
                servers.length,
                `one server, or the two an unfinished replacement leaves of which one is in blog:location with a type of the configuration's ` +
                    `architecture; not ${named.join(" and ")}. A replacement that did not finish leaves the old server beside the new one; the stack's state ` +
                    'marks the old one for deletion (`pulumi stack export` lists it with "delete": true) and holds the other as ' +
                    "blog-server. Copy what you still need from the old one (docs/operations.md, Move data by hand), delete it " +
                    "(`hcloud server delete <id>`), then `pulumi refresh` and `pulumi up`. A server that is not this stack's must " +
                    "not carry its labels: remove them (`hcloud server remove-label <id> stack`)",
            ),
        ],
        warnings: [],
    };
}

/** The fields of the stack's existing data volume these checks read (`hcloud.getVolumes`). */
export type CurrentVolume = Pick<hcloud.types.output.GetVolumesVolume, "name" | "id" | "size" | "location" | "serverId">;

export interface DataArgs {
    /** blog:dataVolumeSize: 0 for none. */
    volumeSize: number;
    /** blog:dataVolumeDeleteOnDestroy. */
    deleteOnDestroy: boolean;
    /** The stack's volume as Hetzner has it now, if there is one. */
    current?: CurrentVolume;
    /** The volume is one you have (blog:dataVolumeId): checked by existingVolumeProblems, never let go of. */
    existing?: boolean;
    /** The new server's location and system, and the current server's type and location. */
    location: string;
    system: HostFacts["system"];
    server?: CurrentServer;
    types: ServerTypeInfo[];
}

/**
 * What the plan does to the services' state: refusals (a volume cannot change location, nor
 * shrink) and warnings for every plan that replaces the server or lets go of the volume.
 */
export function dataProblems(a: DataArgs): { problems: InputProblem[]; warnings: string[]; risks: string[] } {
    const problems: InputProblem[] = [];
    const warnings: string[] = [];
    // One sentence per thing the plan does that a backup should cover (backup.ts adds its age).
    const risks: string[] = [];
    const volume = a.current;
    if (volume && a.volumeSize > 0 && !a.existing) {
        if (volume.location !== undefined && volume.location !== a.location) {
            problems.push(
                new InputProblem(
                    `${NAMESPACE}:location`,
                    a.location,
                    `${volume.location}, where the data volume ${volume.name} (id ${volume.id}) is: Hetzner volumes stay in their location. ` +
                        "To move, copy the data first (docs/operations.md, Move data by hand: scripts/data-backup.sh), then start a stack in the new location",
                ),
            );
        }
        if (a.volumeSize < volume.size) {
            problems.push(
                new InputProblem(
                    `${NAMESPACE}:dataVolumeSize`,
                    a.volumeSize,
                    `at least ${volume.size}: the data volume ${volume.name} has ${volume.size} GB and Hetzner cannot shrink a volume`,
                ),
            );
        }
    }
    // A volume the stack let go of earlier is detached: only an attached one is still the stack's.
    if (volume && !a.existing && volume.serverId !== undefined && volume.serverId !== null && a.volumeSize === 0) {
        risks.push(`This plan ${a.deleteOnDestroy ? "deletes" : "lets go of"} the data volume ${volume.name}.`);
        warnings.push(
            a.deleteOnDestroy
                ? `DATA LOSS: blog:dataVolumeSize is 0 and blog:dataVolumeDeleteOnDestroy is true: this plan DELETES the data volume ${volume.name} ` +
                      `(id ${volume.id}, ${volume.size} GB) and everything the services stored on it.`
                : `blog:dataVolumeSize is 0: this plan detaches the data volume ${volume.name} (id ${volume.id}) and lets go of it; ` +
                      "Hetzner keeps it, with its data, outside the stack (delete it in the console when you no longer need it).",
        );
    }
    if (a.deleteOnDestroy && a.volumeSize > 0 && !a.existing) {
        warnings.push(
            `blog:dataVolumeDeleteOnDestroy is true: \`pulumi destroy\` DELETES the data volume${volume ? ` ${volume.name} (id ${volume.id})` : ""} ` +
                "and everything the services stored on it. Set it back to false and `pulumi up` to keep the volume.",
        );
    }
    const server = a.server;
    const serverType = a.types.find((t) => t.name === server?.serverType);
    const newArchitecture = ARCHITECTURE[a.system];
    const replaced =
        server !== undefined &&
        (server.location !== a.location || (serverType !== undefined && serverType.architecture !== newArchitecture));
    if (replaced && problems.length === 0) {
        risks.push(`This plan replaces the server (${server!.serverType} in ${server!.location}).`);
        warnings.push(
            (a.volumeSize > 0 || a.existing) && volume
                ? `This plan replaces the server (${server!.serverType} in ${server!.location} becomes a new one): the data volume ` +
                      `${volume.name} moves to it. The services on the old server stop and the volume is unmounted before it is detached.`
                : `DATA LOSS: this plan replaces the server (${server!.serverType} in ${server!.location} becomes a new one), and ` +
                      "everything on its disk goes with the old one, the services' state included: the stack has no data volume " +
                      "(docs/operations.md, Move data by hand).",
        );
    }
    return { problems, warnings, risks };
}

export interface PlacementArgs {
    serverType: string;
    location: string;
    system: HostFacts["system"];
    /** Every server type Hetzner offers. */
    types: ServerTypeInfo[];
    /** The stack's server as Hetzner has it now, if there is one. */
    current?: CurrentServer;
}

function list(names: string[]): string {
    return names.length > 0 ? names.join(", ") : "none";
}

/** What is wrong with putting the host on this server type at this location, from Hetzner's answers. */
export function placementProblems(a: PlacementArgs): InputProblem[] {
    const typeKey = `${NAMESPACE}:serverType`;
    const locationKey = `${NAMESPACE}:location`;
    const type = a.types.find((t) => t.name === a.serverType);
    if (!type) {
        const offered = a.types.filter((t) => t.locations.some((l) => l.name === a.location && l.available && !l.isDeprecated));
        return [
            new InputProblem(
                typeKey,
                a.serverType,
                `a server type Hetzner offers (at ${a.location}: ${list(offered.map((t) => t.name))})`,
            ),
        ];
    }
    const problems: InputProblem[] = [];
    const architecture = ARCHITECTURE[a.system];
    if (type.architecture !== architecture) {
        const sameArch = a.types.filter((t) => t.architecture === architecture).map((t) => t.name);
        problems.push(
            new InputProblem(
                typeKey,
                a.serverType,
                `a server type of architecture ${architecture}, as the configuration's system is ${a.system} ` +
                    `(${a.serverType} is ${type.architecture}; ${architecture} types: ${list(sameArch)}), or a configuration built for ${type.architecture}`,
            ),
        );
    }
    if (type.memory < MIN_MEMORY_GB) {
        problems.push(
            new InputProblem(
                typeKey,
                a.serverType,
                `a server type with at least ${MIN_MEMORY_GB} GB of memory for nixos-anywhere's installer (${a.serverType} has ${type.memory} GB)`,
            ),
        );
    }
    // An existing server of this very type and location is left alone: nothing is ordered, so
    // availability and deprecation do not matter to it.
    const unchanged = a.current?.serverType === a.serverType && a.current?.location === a.location;
    if (!unchanged) {
        const here = type.locations.find((l) => l.name === a.location);
        const offeredAt = type.locations.filter((l) => l.available && !l.isDeprecated).map((l) => l.name);
        if (!here) {
            problems.push(
                new InputProblem(locationKey, a.location, `a location where ${a.serverType} is offered: ${list(offeredAt)}`),
            );
        } else if (here.isDeprecated) {
            problems.push(
                new InputProblem(
                    typeKey,
                    a.serverType,
                    `a server type that is not deprecated at ${a.location} (${a.serverType} is, unavailable after ` +
                        `${here.unavailableAfter || "an announced date"}; offered at: ${list(offeredAt)})`,
                ),
            );
        } else if (!here.available) {
            problems.push(
                new InputProblem(
                    typeKey,
                    a.serverType,
                    `a server type available at ${a.location} now (Hetzner reports ${a.serverType} temporarily unavailable there; available at: ${list(offeredAt)})`,
                ),
            );
        }
    }
    // Hetzner grows a disk on a type change but never shrinks one; the same architecture means an
    // in-place change (another architecture is a new server, where the disk starts anew).
    const currentType = a.types.find((t) => t.name === a.current?.serverType);
    if (
        a.current &&
        currentType?.architecture === type.architecture &&
        a.current.location === a.location &&
        type.disk < a.current.primaryDiskSize
    ) {
        problems.push(
            new InputProblem(
                typeKey,
                a.serverType,
                `a server type with a disk of at least ${a.current.primaryDiskSize} GB: the server's disk has ` +
                    `${a.current.primaryDiskSize} GB and Hetzner cannot shrink it (${a.serverType} has ${type.disk} GB)`,
            ),
        );
    }
    return problems;
}

/** Whether `domain` is the zone's apex or a name under it. */
function inZone(domain: string, zone: string): boolean {
    return domain === zone || domain.endsWith(`.${zone}`);
}

/**
 * The Hetzner DNS zone that holds the domain (the longest matching zone name), or the problem
 * when none of the project's zones does.
 */
export function hetznerZoneFor(domain: string, zoneNames: string[]): { zone?: string; problems: InputProblem[] } {
    const zone = zoneNames
        .filter((z) => inZone(domain, z))
        .sort((a, b) => b.length - a.length)[0];
    if (zone) return { zone, problems: [] };
    return {
        problems: [
            new InputProblem(
                "blog.host.domain",
                domain,
                `a name in one of the project's Hetzner DNS zones (${list(zoneNames)}), as ${NAMESPACE}:dns is hetzner: ` +
                    "create the zone in the Hetzner console (DNS), or set blog:dns to cloudflare or none",
            ),
        ],
    };
}

/** The name of an RRSet for `domain` in `zone`, relative to the zone ("@" for the apex), as Hetzner's API takes it. */
export function rrsetName(domain: string, zone: string): string {
    return domain === zone ? "@" : domain.slice(0, -(zone.length + 1));
}

/** Returns the problem when the domain does not lie in the zone `zoneName`. */
export function zoneProblems(domain: string, zoneName: string, zoneId: string): InputProblem[] {
    if (inZone(domain, zoneName)) return [];
    return [
        new InputProblem(
            "blog.host.domain",
            domain,
            `a name in the Cloudflare zone ${JSON.stringify(zoneName)} (${NAMESPACE}:cloudflareZoneId ${zoneId}): ` +
                "change the domain in the host file or the zone id in the stack config",
        ),
    ];
}

/** A Hetzner label value (at most 63 characters, alphanumeric at both ends, `-_.` inside). */
const LABEL_VALUE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;

/**
 * The value as a Hetzner label value: unchanged when it is one, otherwise a readable prefix and
 * a hash of the whole value, so two long values stay distinct.
 */
export function labelValue(value: string): string {
    if (LABEL_VALUE.test(value)) return value;
    const hash = createHash("sha256").update(value).digest("hex").slice(0, 10);
    const prefix = value
        .replace(/[^A-Za-z0-9._-]/g, "-")
        .slice(0, 52)
        .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, "");
    return prefix ? `${prefix}-${hash}` : hash;
}

/** The labels on every Hetzner resource of this stack, and the selector that finds its server. */
export function stackLabels(domain: string): { labels: Record<string, string>; selector: string } {
    const labels = {
        "managed-by": "pulumi",
        project: labelValue(pulumi.getProject()),
        stack: labelValue(pulumi.getStack()),
        domain: labelValue(domain),
    };
    const selector = ["managed-by", "project", "stack"].map((k) => `${k}=${labels[k as keyof typeof labels]}`).join(",");
    return { labels, selector };
}

export interface PreflightArgs {
    domain: string;
    /** Where the new Hetzner server goes (host `hetzner`); absent for an existing machine. */
    placement?: {
        serverType: string;
        location: string;
        system: HostFacts["system"];
        /** Label selector of the stack's server (see `stackLabels`). */
        selector: string;
    };
    /** Where the records go. */
    dns: "cloudflare" | "hetzner" | "none";
    /** The Cloudflare zone, with dns `cloudflare`. */
    cloudflareZoneId?: string;
    /** Proxied records whose zone's SSL mode the stack does not set: the zone must already be Full (strict). */
    requireStrictSsl?: boolean;
    /** The data volume config (host `hetzner`). */
    data?: { volumeSize: number; deleteOnDestroy: boolean; existingId?: string };
}

/** What the checks learned that the stack uses. */
export interface Preflight {
    /** The Hetzner DNS zone of the domain, with dns `hetzner`. */
    hetznerZone?: string;
    /** The system the stack's server runs now (its type's architecture at Hetzner), when there is one. */
    liveSystem?: HostFacts["system"];
    /** The volume blog:dataVolumeId names, as Hetzner has it. */
    existingVolume?: { id: string; name: string; linuxDevice: string };
    /** What the plan does to the services' state that a backup should cover (a replaced server, a volume let go of). */
    dataRisks?: string[];
}

/** A volume you have can be the data volume when it is in the server's location and not attached to another server. */
export function existingVolumeProblems(
    volume: { id: number; name: string; location?: string; serverId?: number },
    location: string,
    stackServerIds: number[] = [],
): InputProblem[] {
    const key = `${NAMESPACE}:dataVolumeId`;
    const problems: InputProblem[] = [];
    if (volume.location !== undefined && volume.location !== location) {
        problems.push(
            new InputProblem(
                key,
                String(volume.id),
                `a volume in ${location}, the server's location: ${volume.name} is in ${volume.location}, and Hetzner attaches a volume only to a server of its location (or set blog:location to ${volume.location})`,
            ),
        );
    }
    if (volume.serverId !== undefined && volume.serverId !== null && !stackServerIds.includes(volume.serverId)) {
        problems.push(
            new InputProblem(
                key,
                String(volume.id),
                `a volume that is not attached to another server: ${volume.name} is attached to server ${volume.serverId}; ` +
                    "stop what uses it there and detach it first (`hcloud volume detach`)",
            ),
        );
    }
    return problems;
}

/** Cloudflare's SSL modes, as the zone setting `ssl` holds them. */
const SSL_MODE_NAMES: Record<string, string> = { off: "Off", flexible: "Flexible", full: "Full", strict: "Full (strict)" };

/** Proxied records need the zone to check the origin's certificate: Full (strict). */
export function sslModeProblems(mode: string, zoneName: string): InputProblem[] {
    if (mode === "strict") return [];
    return [
        new InputProblem(
            `the SSL mode of the Cloudflare zone ${zoneName}`,
            SSL_MODE_NAMES[mode] ?? mode,
            "Full (strict) for proxied records, so that Cloudflare checks the origin's certificate: set it in the dashboard " +
                "(SSL/TLS > Overview; it applies to every proxied record of the zone), or let the stack set it with " +
                "`pulumi config set manageSslMode true`",
        ),
    ];
}

/** What a lookup answered, or the provider's message when it failed (a miss, a refused token...). */
export type Answer<T> = { value: T; error?: undefined } | { value?: undefined; error: string };

/**
 * The provider's own words from a failed invoke: the SDK reports "Invoke of '<token>' failed:
 * <message> (<details>)" or a gRPC status text; the first line after "failed:" is the provider's.
 */
export function providerMessage(e: unknown): string {
    const text = e instanceof Error ? e.message : String(e);
    // @pulumi/pulumi 3.276: "invocation of <token> returned an error: <message>"; older: "Invoke of '<token>' failed: <message>".
    const provider = /(?:returned an error|failed): ([\s\S]*)$/.exec(text);
    return (provider ? provider[1] : text).replace(/^rpc error: code = \w+ desc = /, "").split("\n")[0].trim();
}

/** An invoke whose failure is an answer, never an unhandled exception that ends the program. */
function ask<T>(call: () => Promise<T>): pulumi.Output<Answer<T>> {
    const answer = call().then(
        (value): Answer<T> => ({ value }),
        (e): Answer<T> => ({ error: providerMessage(e) }),
    );
    // Plain data: nothing in an answer is an Output for pulumi.output to unwrap.
    return pulumi.output(answer) as unknown as pulumi.Output<Answer<T>>;
}

/**
 * The problem a failed lookup is: the key whose value it asked about, that value, and what the
 * provider answered. Every lookup that can miss (a zone, a volume) names its own key.
 */
export function lookupProblem(key: string, value: unknown, what: string, error: string): InputProblem {
    return new InputProblem(key, value, `${what} (the lookup failed: ${error})`);
}

/**
 * Asks Hetzner and Cloudflare what these checks need, then fails with every problem at once;
 * resolves when all is well. Whatever is created must wait for it. A lookup that fails (the
 * volume or the zone does not exist, the token is refused) is one of those problems.
 */
export function preflight(a: PreflightArgs): pulumi.Output<Preflight> {
    const placement = a.placement;
    const none = <T>(value: T) => pulumi.output({ value }) as unknown as pulumi.Output<Answer<T>>;
    const types = placement ? ask(() => hcloud.getServerTypes({}).then((r) => r.serverTypes)) : none([]);
    const current = placement ? ask(() => hcloud.getServers({ withSelector: placement.selector }).then((r) => r.servers)) : none([]);
    const zoneId = a.cloudflareZoneId ?? "";
    const zoneName = a.dns === "cloudflare" ? ask(() => cloudflare.getZone({ zoneId }).then((z) => z.name)) : none("");
    const hetznerZones = a.dns === "hetzner" ? ask(() => hcloud.getZones({}).then((r) => r.zones.map((z) => z.name))) : none<string[]>([]);
    const sslMode =
        a.dns === "cloudflare" && a.requireStrictSsl
            ? ask(() => cloudflare.getZoneSetting({ zoneId, settingId: "ssl" }).then((r) => String(r.value)))
            : none("strict");
    const volumes = placement ? ask(() => hcloud.getVolumes({ withSelector: placement.selector }).then((r) => r.volumes)) : none([]);
    const existingId = a.data?.existingId;
    const existing =
        placement && existingId !== undefined ? ask(() => hcloud.getVolume({ id: Number(existingId) })) : none(undefined);
    const asked = [types, current, zoneName, hetznerZones, sslMode, volumes, existing] as pulumi.Output<Answer<unknown>>[];
    return pulumi.all(asked).apply((answers) => {
        const typesA = answers[0] as Answer<hcloud.GetServerTypesResult["serverTypes"]>;
        const serversA = answers[1] as Answer<hcloud.GetServersResult["servers"]>;
        const cfZoneA = answers[2] as Answer<string>;
        const hzZonesA = answers[3] as Answer<string[]>;
        const sslA = answers[4] as Answer<string>;
        const volsA = answers[5] as Answer<hcloud.GetVolumesResult["volumes"]>;
        const ownA = answers[6] as Answer<hcloud.GetVolumeResult | undefined>;
        const problems: InputProblem[] = [];
        // Lookups of lists miss nothing; they fail only when the provider refuses (token, network).
        const hetzner = (answer: Answer<unknown>, what: string) => {
            if (answer.error !== undefined) problems.push(lookupProblem("hcloud:token", "[secret]", `a token with which Hetzner answers ${what}`, answer.error));
        };
        hetzner(typesA, "its server types");
        hetzner(serversA, "the stack's servers");
        hetzner(volsA, "the stack's volumes");
        hetzner(hzZonesA, "the project's DNS zones");
        if (cfZoneA.error !== undefined) {
            problems.push(lookupProblem(`${NAMESPACE}:cloudflareZoneId`, zoneId, "the id of a zone your Cloudflare token can read", cfZoneA.error));
        } else if (sslA.error !== undefined) {
            problems.push(lookupProblem(`${NAMESPACE}:cloudflareZoneId`, zoneId, "a zone whose SSL mode your Cloudflare token can read (Zone Settings: Read)", sslA.error));
        }
        // Without these answers nothing else can be checked.
        failOn(problems, "The stack cannot place the host (nothing was created or changed):");
        if (ownA.error !== undefined) {
            problems.push(lookupProblem(`${NAMESPACE}:dataVolumeId`, existingId, "the id of a volume in the Hetzner project of hcloud:token", ownA.error));
        }
        const [t, servers, cfZone, hzZones, ssl, vols, own] = [typesA.value!, serversA.value!, cfZoneA.value!, hzZonesA.value!, sslA.value!, volsA.value!, ownA.value];
        const stack = placement ? stackServer(servers, placement.selector, placement, t) : { current: undefined, problems: [], warnings: [] };
        failOn(stack.problems, "The stack cannot place the host (nothing was created or changed):");
        stack.warnings.forEach((w) => pulumi.log.warn(w));
        const server = stack.current;
        const serverIds = servers.map((x) => x.id);
        problems.push(...(placement ? placementProblems({ ...placement, types: t, current: server }) : []));
        const result: Preflight = {};
        const liveArchitecture = t.find((type) => type.name === server?.serverType)?.architecture;
        result.liveSystem = (Object.keys(ARCHITECTURE) as HostFacts["system"][]).find((system) => ARCHITECTURE[system] === liveArchitecture);
        if (a.dns === "cloudflare") problems.push(...zoneProblems(a.domain, cfZone, a.cloudflareZoneId ?? ""));
        if (a.dns === "cloudflare" && a.requireStrictSsl) problems.push(...sslModeProblems(String(ssl), cfZone));
        if (placement && own) {
            problems.push(...existingVolumeProblems(own, placement.location, serverIds));
            result.existingVolume = { id: String(own.id), name: own.name, linuxDevice: own.linuxDevice };
        }
        if (placement && a.data) {
            const data = dataProblems({
                ...a.data,
                // The stack's own volume is the one attached to its server (either, while a replacement is
                // unfinished): a volume it let go of keeps the labels.
                current: own ?? vols.find((v) => v.serverId !== undefined && v.serverId !== null && serverIds.includes(v.serverId)),
                existing: own !== undefined,
                location: placement.location,
                system: placement.system,
                server,
                types: t,
            });
            problems.push(...data.problems);
            // Shown in every preview and update whose plan does this, before anything is changed.
            data.warnings.forEach((w) => pulumi.log.warn(w));
            result.dataRisks = data.risks;
        }
        if (a.dns === "hetzner") {
            const found = hetznerZoneFor(a.domain, hzZones);
            problems.push(...found.problems);
            result.hetznerZone = found.zone;
        }
        failOn(problems, "The stack cannot place the host (nothing was created or changed):");
        return result;
    });
}
