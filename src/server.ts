import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";

export interface BlogServerArgs {
    /** Hetzner Cloud server type; no default here, the stack config defaults to `cx23`. */
    serverType: pulumi.Input<string>;
    /** Hetzner Cloud location; the stack config defaults to `nbg1`. */
    location: pulumi.Input<string>;
    /** Stock image the server first boots (nixos-anywhere kexecs from it); the stack config defaults to `ubuntu-24.04`. */
    image: pulumi.Input<string>;
    /** OpenSSH public keys of the admins; uploaded so the stock image accepts the first login. No default. */
    adminSshKeys: string[];
    /** Labels set on every Hetzner resource; defaults to none. */
    labels?: pulumi.Input<Record<string, pulumi.Input<string>>>;
}

/** Inbound traffic the host serves; everything else is dropped at Hetzner's edge. */
export const FIREWALL_RULES: hcloud.types.input.FirewallRule[] = [
    { description: "SSH: administration and deploys", direction: "in", protocol: "tcp", port: "22" },
    { description: "HTTP: ACME HTTP-01 and the redirect to HTTPS", direction: "in", protocol: "tcp", port: "80" },
    { description: "HTTPS: the site", direction: "in", protocol: "tcp", port: "443" },
    { description: "ICMP: ping and path MTU discovery", direction: "in", protocol: "icmp" },
].map((rule) => ({ ...rule, sourceIps: ["0.0.0.0/0", "::/0"] }));

/**
 * The Hetzner Cloud server with its admin SSH keys and firewall. nixos-anywhere later replaces
 * the image, so the server ignores changes to what it replaces and is never rebuilt by an
 * ordinary `pulumi up`.
 */
export class BlogServer extends pulumi.ComponentResource {
    public readonly server: hcloud.Server;
    public readonly firewall: hcloud.Firewall;
    public readonly sshKeys: hcloud.SshKey[];
    public readonly id: pulumi.Output<string>;
    public readonly ipv4: pulumi.Output<string>;
    public readonly ipv6: pulumi.Output<string>;

    constructor(name: string, args: BlogServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("blog:hetzner:Server", name, {}, opts);
        const labels = args.labels ?? {};

        this.sshKeys = args.adminSshKeys.map(
            (publicKey, i) =>
                new hcloud.SshKey(`${name}-admin-${i}`, { publicKey, labels }, { parent: this }),
        );

        this.firewall = new hcloud.Firewall(`${name}-firewall`, { rules: FIREWALL_RULES, labels }, { parent: this });

        this.server = new hcloud.Server(
            `${name}-server`,
            {
                serverType: args.serverType,
                location: args.location,
                image: args.image,
                publicNets: [{ ipv4Enabled: true, ipv6Enabled: true }],
                sshKeys: this.sshKeys.map((key) => key.id),
                firewallIds: [this.firewall.id.apply((id) => Number(id))],
                labels,
            },
            {
                parent: this,
                // nixos-anywhere replaces the stock image and its first-boot data: changes to
                // them must not propose a new server.
                ignoreChanges: ["image", "userData", "sshKeys"],
            },
        );

        this.id = this.server.id;
        this.ipv4 = this.server.ipv4Address;
        this.ipv6 = this.server.ipv6Address;
        this.registerOutputs({ id: this.id, ipv4: this.ipv4, ipv6: this.ipv6 });
    }
}
