import * as cloudflare from "@pulumi/cloudflare";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";

/** One address record of the site, as a person would enter it at a DNS provider. */
export interface AddressRecord {
    type: "A" | "AAAA";
    /** Fully qualified name, without a trailing dot. */
    name: string;
    content: string;
}

/** The site's address records: A for an IPv4 address, AAAA for an IPv6 one. */
export function addressRecords(domain: string, ipv4?: pulumi.Input<string>, ipv6?: pulumi.Input<string>) {
    const records: Array<{ type: "A" | "AAAA"; content: pulumi.Input<string> }> = [];
    if (ipv4 !== undefined) records.push({ type: "A", content: ipv4 });
    if (ipv6 !== undefined) records.push({ type: "AAAA", content: ipv6 });
    return records.map((r) => ({ ...r, name: domain }));
}

export interface BlogDnsArgs {
    /** Cloudflare zone that holds the domain. No default. */
    zoneId: pulumi.Input<string>;
    /** Fully qualified name of the records, without a trailing dot (Cloudflare stores it so; a dot drifts on refresh). No default. */
    domain: string;
    /** IPv4 address for the A record; no A record when absent. */
    ipv4?: pulumi.Input<string>;
    /** IPv6 address for the AAAA record; no AAAA record when absent. */
    ipv6?: pulumi.Input<string>;
    /** TTL in seconds, 1 meaning automatic; defaults to 1. */
    ttl?: pulumi.Input<number>;
    /** Whether Cloudflare proxies the records; defaults to false. */
    proxied?: pulumi.Input<boolean>;
}

/** The site's A and AAAA records at Cloudflare, pointing at the host. */
export class BlogDns extends pulumi.ComponentResource {
    public readonly records: cloudflare.DnsRecord[];

    constructor(name: string, args: BlogDnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("blog:cloudflare:Dns", name, {}, opts);
        this.records = addressRecords(args.domain, args.ipv4, args.ipv6).map(
            (r) =>
                new cloudflare.DnsRecord(
                    `${name}-${r.type.toLowerCase()}`,
                    {
                        zoneId: args.zoneId,
                        name: r.name,
                        type: r.type,
                        content: r.content,
                        ttl: args.ttl ?? 1,
                        proxied: args.proxied ?? false,
                        comment: "Managed by Pulumi (blog stack)",
                    },
                    { parent: this },
                ),
        );
        this.registerOutputs({});
    }
}

export interface HetznerDnsArgs {
    /** Name of the Hetzner DNS zone that holds the domain (found by the preflight checks). No default. */
    zone: pulumi.Input<string>;
    /** Fully qualified name of the records. No default. */
    domain: string;
    /** The domain relative to the zone, "@" for the apex. No default. */
    relativeName: pulumi.Input<string>;
    /** IPv4 address for the A record; no A record when absent. */
    ipv4?: pulumi.Input<string>;
    /** IPv6 address for the AAAA record; no AAAA record when absent. */
    ipv6?: pulumi.Input<string>;
    /** TTL in seconds; 1 (the stack's "automatic") leaves the zone's default. */
    ttl?: number;
    /** Labels of the record sets; defaults to none. */
    labels?: pulumi.Input<Record<string, pulumi.Input<string>>>;
}

/** The site's A and AAAA record sets in Hetzner's DNS (part of the Hetzner Cloud API). */
export class HetznerDns extends pulumi.ComponentResource {
    public readonly records: hcloud.ZoneRrset[];

    constructor(name: string, args: HetznerDnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("blog:hetzner:Dns", name, {}, opts);
        this.records = addressRecords(args.domain, args.ipv4, args.ipv6).map(
            (r) =>
                new hcloud.ZoneRrset(
                    `${name}-${r.type.toLowerCase()}`,
                    {
                        zone: args.zone,
                        name: args.relativeName,
                        type: r.type,
                        records: [{ value: r.content, comment: "Managed by Pulumi (blog stack)" }],
                        ttl: args.ttl === undefined || args.ttl === 1 ? undefined : args.ttl,
                        labels: args.labels,
                    },
                    {
                        parent: this,
                        // A zone holds one RRSet per name and type: the API refuses a second (409
                        // uniqueness_error), so a replacement that keeps them (`zone`, `name` and `type`
                        // force one: terraform-provider-hcloud internal/zonerrset/resource.go
                        // RequiresReplace; a forced `--replace`) must delete the old set first. The
                        // records are missing for the moment between the two calls.
                        deleteBeforeReplace: true,
                    },
                ),
        );
        this.registerOutputs({});
    }
}
