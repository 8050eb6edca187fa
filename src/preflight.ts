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
export type CurrentServer = Pick<hcloud.types.output.GetServersServer, "serverType" | "location" | "primaryDiskSize">;

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

/** Returns the problem when the domain does not lie in the zone `zoneName`. */
export function zoneProblems(domain: string, zoneName: string, zoneId: string): InputProblem[] {
    if (domain === zoneName || domain.endsWith(`.${zoneName}`)) return [];
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
    serverType: string;
    location: string;
    system: HostFacts["system"];
    domain: string;
    cloudflareZoneId: string;
    /** Label selector of the stack's server (see `stackLabels`). */
    selector: string;
}

/**
 * Asks Hetzner and Cloudflare, then fails with every problem at once; resolves (to nothing) when
 * all is well. Whatever is created must wait for it.
 */
export function preflight(a: PreflightArgs): pulumi.Output<void> {
    const types = hcloud.getServerTypesOutput({}).serverTypes;
    const current = hcloud.getServersOutput({ withSelector: a.selector }).servers;
    const zone = cloudflare.getZoneOutput({ zoneId: a.cloudflareZoneId });
    return pulumi.all([types, current, zone.name]).apply(([t, servers, zoneName]) => {
        const problems = [
            ...placementProblems({ ...a, types: t, current: servers[0] }),
            ...zoneProblems(a.domain, zoneName, a.cloudflareZoneId),
        ];
        failOn(problems, "The stack cannot place the host (nothing was created or changed):");
    });
}
