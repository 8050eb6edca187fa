import { createHash, createPublicKey } from "crypto";
import * as cloudflare from "@pulumi/cloudflare";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { providerMessage } from "./preflight";

/** Cloudflare's longest Origin CA validity, 15 years (Cloudflare's origin_ca_certificate `requested_validity`). */
export const ORIGIN_CERT_DAYS = 5475;

export interface CloudflareOriginArgs {
    /** Cloudflare zone of the domain. No default. */
    zoneId: pulumi.Input<string>;
    /** The site's fully qualified domain: the certificate's one name. No default. */
    domain: pulumi.Input<string>;
    /** Set the zone's SSL mode to Full (strict) (zone-wide); defaults to false: the preflight checks demand strict instead. */
    manageSslMode?: boolean;
}

/**
 * What the origin needs behind Cloudflare's proxy: a certificate that Cloudflare's Full (strict)
 * mode trusts, issued by Cloudflare's Origin CA for a key the stack generates (no ACME exchange:
 * the proxy hides the origin from any CA), and nginx lines that restore visitors' addresses from
 * `CF-Connecting-IP` for Cloudflare's current ranges. Both reach the host as host secrets.
 */
export class CloudflareOrigin extends pulumi.ComponentResource {
    public readonly key: tls.PrivateKey;
    public readonly certificate: cloudflare.OriginCaCertificate;
    /** The zone's SSL mode, when the stack manages it. */
    public readonly sslMode?: cloudflare.ZoneSetting;
    /** The certificate and key (secret) and the real-IP lines, by the names the NixOS module reads (blog.secrets). */
    public readonly hostSecrets: Record<string, pulumi.Output<string>>;
    /** curl's pin of the origin key (`sha256//<base64>`): the deploy's health check accepts this key without a public CA. */
    public readonly pin: pulumi.Output<string>;
    /** Cloudflare's address ranges, IPv4 then IPv6 (`cloudflare.getIpRanges`, read at every preview and update). */
    public readonly ranges: pulumi.Output<string[]>;

    constructor(name: string, args: CloudflareOriginArgs, opts?: pulumi.ComponentResourceOptions) {
        super("blog:cloudflare:Origin", name, {}, opts);

        this.key = new tls.PrivateKey(`${name}-origin-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, { parent: this });
        const csr = new tls.CertRequest(
            `${name}-origin-csr`,
            { privateKeyPem: this.key.privateKeyPem, subject: { commonName: args.domain }, dnsNames: [args.domain] },
            { parent: this },
        );
        this.certificate = new cloudflare.OriginCaCertificate(
            `${name}-origin-certificate`,
            {
                csr: csr.certRequestPem,
                hostnames: [args.domain],
                requestType: "origin-ecc",
                requestedValidity: ORIGIN_CERT_DAYS,
            },
            { parent: this },
        );

        if (args.manageSslMode) {
            pulumi.log.warn(
                "blog:manageSslMode is true: the stack sets the SSL mode of the whole zone to Full (strict). Every proxied record " +
                    "of the zone is affected: an origin without a certificate Cloudflare trusts then answers with error 526. " +
                    "Destroying the stack leaves the mode as it is.",
                this,
            );
            this.sslMode = new cloudflare.ZoneSetting(
                `${name}-ssl-strict`,
                { zoneId: args.zoneId, settingId: "ssl", value: "strict" },
                // Zone-wide: leaving the stack must not weaken the zone's other proxied records.
                { parent: this, retainOnDelete: true },
            );
        }

        // A lookup that cannot miss, but can fail (the API unreachable): the program's message, not a stack trace.
        const ranges = cloudflare.getIpRanges({}, { parent: this }).then(
            (r) => [...r.ipv4Cidrs, ...r.ipv6Cidrs],
            (e) => {
                throw new pulumi.RunError(`Cloudflare's address ranges (getIpRanges, for blog:proxied) could not be read: ${providerMessage(e)}`);
            },
        );
        this.ranges = pulumi.output(ranges);
        this.pin = this.key.publicKeyPem.apply(publicKeyPin);
        this.hostSecrets = {
            cloudflareOriginCert: this.certificate.certificate,
            cloudflareOriginKey: pulumi.secret(this.key.privateKeyPem),
            cloudflareRealIp: this.ranges.apply(realIpLines),
        };
        this.registerOutputs({ pin: this.pin });
    }
}

/** nginx's lines for the real_ip module: trust `CF-Connecting-IP` from these ranges only. */
export function realIpLines(cidrs: string[]): string {
    return cidrs.map((cidr) => `set_real_ip_from ${cidr};\n`).join("");
}

/** curl's `--pinnedpubkey` form of a PEM public key: sha256 of its DER SubjectPublicKeyInfo, base64. */
export function publicKeyPin(pem: string): string {
    const der = createPublicKey(pem).export({ type: "spki", format: "der" });
    return `sha256//${createHash("sha256").update(der).digest("base64")}`;
}
