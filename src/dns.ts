import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";

export interface BlogDnsArgs {
    /** Cloudflare zone that holds the domain. No default. */
    zoneId: pulumi.Input<string>;
    /** Fully qualified name of the records, without a trailing dot (Cloudflare stores it so; a dot drifts on refresh). No default. */
    domain: pulumi.Input<string>;
    /** IPv4 address for the A record. No default. */
    ipv4: pulumi.Input<string>;
    /** IPv6 address for the AAAA record. No default. */
    ipv6: pulumi.Input<string>;
    /** TTL in seconds, 1 meaning automatic; defaults to 1. */
    ttl?: pulumi.Input<number>;
    /** Whether Cloudflare proxies the records; defaults to false. */
    proxied?: pulumi.Input<boolean>;
}

/** The site's A and AAAA records at Cloudflare, pointing at the server. */
export class BlogDns extends pulumi.ComponentResource {
    public readonly a: cloudflare.DnsRecord;
    public readonly aaaa: cloudflare.DnsRecord;

    constructor(name: string, args: BlogDnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("blog:cloudflare:Dns", name, {}, opts);
        const record = (type: "A" | "AAAA", content: pulumi.Input<string>) =>
            new cloudflare.DnsRecord(
                `${name}-${type.toLowerCase()}`,
                {
                    zoneId: args.zoneId,
                    name: args.domain,
                    type,
                    content,
                    ttl: args.ttl ?? 1,
                    proxied: args.proxied ?? false,
                    comment: "Managed by Pulumi (blog stack)",
                },
                { parent: this },
            );
        this.a = record("A", args.ipv4);
        this.aaaa = record("AAAA", args.ipv6);
        this.registerOutputs({});
    }
}
