import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";

export interface BlogServerArgs {
    /** Hetzner Cloud server type, once checked (see preflight.ts); the stack config defaults to `cx23`. */
    serverType: pulumi.Input<string>;
    /** Hetzner Cloud location; the stack config defaults to `nbg1`. */
    location: pulumi.Input<string>;
    /** Stock image the server first boots (nixos-anywhere kexecs from it); the stack config defaults to `ubuntu-24.04`. */
    image: pulumi.Input<string>;
    /**
     * Nix system of the host (`x86_64-linux` or `aarch64-linux`). A new value is a new server: Hetzner
     * cannot move a server between architectures. No default.
     */
    system: pulumi.Input<string>;
    /** Labels set on every Hetzner resource; defaults to none. */
    labels?: pulumi.Input<Record<string, pulumi.Input<string>>>;
    /** Hetzner's daily backups of the server's disk (20% of its price); defaults to false. */
    backups?: pulumi.Input<boolean>;
    /** Where HTTP and HTTPS may come from (CIDRs); defaults to everywhere. Behind Cloudflare's proxy: its ranges. */
    webSourceIps?: pulumi.Input<pulumi.Input<string>[]>;
    /**
     * The system of the stack's server as Hetzner has it now (the preflight checks), undefined when there
     * is none: another than `system` replaces the server, whatever the state holds. Defaults to undefined.
     */
    liveSystem?: pulumi.Input<string | undefined>;
    /** Keep the server's addresses secret (behind Cloudflare's proxy, which hides them); defaults to false. */
    hideAddresses?: boolean;
}

const EVERYWHERE = ["0.0.0.0/0", "::/0"];

/**
 * A resource transform (run by the engine at registration, after the preflight checks resolved)
 * that makes a change of architecture replace the server whatever the state holds.
 *
 * `replacementTrigger` alone does not: it is stored in state, and the engine never replaces for a
 * missing old trigger (pulumi/pulumi v3.276.0 pkg/resource/deploy/step_generator.go
 * shouldTriggerReplace: "Nulls mean there is no replacement trigger"). A stack whose state was
 * written before the server had its trigger would take its first architecture change as an
 * in-place change of type, which Hetzner refuses across architectures after powering the server
 * off. So when the server Hetzner has now (`liveSystem`, from the preflight checks) runs another
 * system than the configuration, `serverType`, which always changes with the architecture, is
 * made a replace-on-change property of this one registration.
 *
 * (@pulumi/pulumi 3.261's `stateMigrations`, which could write the missing trigger into the old
 * state, cannot be used here: the 3.276.0 SDK checks the engine's support for it synchronously in
 * registerResource, before it has asked the engine, so a resource declared at program start is
 * always refused.)
 */
export function replaceAcrossArchitectures(system: Promise<string>, liveSystem: Promise<string | undefined>): pulumi.ResourceTransform {
    return async ({ props, opts }) => {
        const live = await liveSystem;
        if (live === undefined || live === (await system)) return undefined;
        return { props, opts: { ...opts, replaceOnChanges: [...(opts.replaceOnChanges ?? []), "serverType"] } };
    };
}

/** An Output's value as a Promise (resolved once the Output is known; preflight answers are, in preview too). */
function settled<T>(value: pulumi.Input<T>): Promise<T> {
    return new Promise((resolve) => pulumi.output(value).apply((v) => resolve(v as T)));
}

/**
 * The server's user data: a cloud-config whose `ssh_keys` gives the stock image the bootstrap host
 * key. cloud-init's ssh module (canonical/cloud-init cloudinit/config/cc_ssh.py, handle()) first
 * deletes the image's host keys (`ssh_deletekeys`, default true: /etc/ssh/ssh_host_*key*), then,
 * when `ssh_keys` is given, writes exactly those keys and generates none (the `ssh_genkeytypes`
 * branch runs only without `ssh_keys`): the image presents this one ed25519 key, known before the
 * first packet. The kexec installer keeps it (nix-community/nixos-images nix/kexec-installer/
 * kexec-run.sh copies /etc/ssh/ssh_host_* into its initrd, nix/restore-remote-access.nix installs
 * them; tag nixos-25.05, the release nixos-anywhere 1.13.0 downloads). The installed NixOS does not
 * run cloud-init's ssh module (nix/modules/network.nix), so the key ends with the install.
 */
export function bootstrapUserData(privateKey: string, publicKey: string): string {
    const indented = privateKey.trim().split("\n").map((line) => `    ${line}`).join("\n");
    return [
        "#cloud-config",
        "ssh_deletekeys: true",
        "ssh_genkeytypes: []",
        "ssh_keys:",
        "  ed25519_private: |",
        indented,
        `  ed25519_public: ${publicKey.trim()}`,
        "",
    ].join("\n");
}

/** Inbound traffic the host serves; everything else is dropped at Hetzner's edge. */
export function firewallRules(webSourceIps: pulumi.Input<pulumi.Input<string>[]> = EVERYWHERE): hcloud.types.input.FirewallRule[] {
    return [
        { description: "SSH: administration and deploys", direction: "in", protocol: "tcp", port: "22", sourceIps: EVERYWHERE },
        { description: "HTTP: ACME HTTP-01 and the redirect to HTTPS", direction: "in", protocol: "tcp", port: "80", sourceIps: webSourceIps },
        { description: "HTTPS: the site", direction: "in", protocol: "tcp", port: "443", sourceIps: webSourceIps },
        { description: "ICMP: ping and path MTU discovery", direction: "in", protocol: "icmp", sourceIps: EVERYWHERE },
    ];
}

/**
 * The Hetzner Cloud server with its firewall and bootstrap key.
 *
 * The stock image is only ever logged in to by the install, so Hetzner gets one key: a bootstrap
 * key the stack generates (ed25519, kept as a secret in state), not the admins' keys. The admins'
 * keys reach the host through NixOS (`blog.host.adminSshKeys`), where adding, removing or
 * reordering them is an ordinary deploy. Hetzner never sees them, so it can neither refuse a
 * rotation (one fingerprint per project) nor hand a replacement server a list of deleted keys.
 *
 * The stock image presents a host key the stack also generates, the bootstrap host key, given to it
 * in the user data (see bootstrapUserData): the install pins it from its first connection. It is a
 * throwaway: Hetzner's metadata service serves the user data to the server for its whole life, so it
 * is never the host's permanent key (the install's), and a new location or architecture, which
 * replaces the server, makes a new one.
 */
export class BlogServer extends pulumi.ComponentResource {
    public readonly server: hcloud.Server;
    public readonly firewall: hcloud.Firewall;
    public readonly bootstrapKey: tls.PrivateKey;
    public readonly bootstrapSshKey: hcloud.SshKey;
    /** The private half of the bootstrap key (secret): what the install logs in to the stock image with. */
    public readonly bootstrapPrivateKey: pulumi.Output<string>;
    /** The throwaway host key the stock image and nixos-anywhere's installer present (user data). */
    public readonly bootstrapHostKey: tls.PrivateKey;
    /** Its public key line ("ssh-ed25519 AAAA..."): what the install pins before the first connection. */
    public readonly bootstrapHostPublicKey: pulumi.Output<string>;
    public readonly id: pulumi.Output<string>;
    public readonly ipv4: pulumi.Output<string>;
    public readonly ipv6: pulumi.Output<string>;

    constructor(name: string, args: BlogServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("blog:hetzner:Server", name, {}, opts);
        const labels = args.labels ?? {};

        this.bootstrapKey = new tls.PrivateKey(`${name}-bootstrap-key`, { algorithm: "ED25519" }, { parent: this });
        this.bootstrapPrivateKey = pulumi.secret(this.bootstrapKey.privateKeyOpenssh);
        this.bootstrapSshKey = new hcloud.SshKey(
            `${name}-bootstrap`,
            { publicKey: this.bootstrapKey.publicKeyOpenssh.apply((key) => key.trim()), labels },
            { parent: this },
        );

        this.bootstrapHostKey = new tls.PrivateKey(
            `${name}-bootstrap-host-key`,
            { algorithm: "ED25519" },
            // A server replaced for a new location or architecture gets a new one: a server the stack
            // leaves keeps serving its user data to whatever runs on it until it is deleted.
            { parent: this, replacementTrigger: pulumi.interpolate`${args.location} ${args.system}` },
        );
        this.bootstrapHostPublicKey = this.bootstrapHostKey.publicKeyOpenssh.apply((key) => key.trim());
        const userData = pulumi.secret(
            pulumi
                .all([this.bootstrapHostKey.privateKeyOpenssh, this.bootstrapHostKey.publicKeyOpenssh])
                .apply(([privateKey, publicKey]) => bootstrapUserData(privateKey, publicKey)),
        );

        this.firewall = new hcloud.Firewall(`${name}-firewall`, { rules: firewallRules(args.webSourceIps), labels }, { parent: this });

        this.server = new hcloud.Server(
            `${name}-server`,
            {
                serverType: args.serverType,
                location: args.location,
                image: args.image,
                publicNets: [{ ipv4Enabled: true, ipv6Enabled: true }],
                sshKeys: [this.bootstrapSshKey.id],
                userData,
                firewallIds: [this.firewall.id.apply((id) => Number(id))],
                backups: args.backups ?? false,
                labels,
            },
            {
                parent: this,
                // nixos-anywhere replaces the stock image: a new `image` must not propose a new
                // server by itself. Ignored only for the diff: when the server is replaced for another
                // reason (location, architecture, `pulumi up --replace`), the engine checks the
                // program's own values again and the new server boots the current `image` (pulumi/pulumi
                // v3.276.0 pkg/resource/deploy/step_generator.go: a replacement calls the provider's
                // Check with goal.Properties). `sshKeys` is the bootstrap key, the same for the stack's
                // life: ignoring it only keeps stacks made before the bootstrap key from replacing their
                // server (a replacement gets the bootstrap key, for the same reason). `userData`
                // (Hetzner replaces a server on a new one) keeps a server made before the bootstrap
                // host key, or before its key was renewed, where it is; a replacement is created
                // with the program's user data, for the same reason.
                ignoreChanges: ["image", "sshKeys", "userData"],
                // Hetzner changes a server's type in place, but only within one architecture
                // (hetznercloud/terraform-provider-hcloud#1000): a new architecture is a new server.
                replacementTrigger: args.system,
                // ...also for a state written before the trigger existed.
                transforms: [replaceAcrossArchitectures(settled(args.system), settled(args.liveSystem))],
                // Behind the proxy its addresses are what the proxy hides: secret in state, and
                // [secret] wherever the CLI would print them (pulumi up --diff shows outputs).
                additionalSecretOutputs: args.hideAddresses ? ["ipv4Address", "ipv6Address", "ipv6Network"] : [],
            },
        );

        const hidden = (a: pulumi.Output<string>) => (args.hideAddresses ? pulumi.secret(a) : a);
        this.id = this.server.id;
        this.ipv4 = hidden(this.server.ipv4Address);
        this.ipv6 = hidden(this.server.ipv6Address);
        this.registerOutputs({ id: this.id, ipv4: this.ipv4, ipv6: this.ipv6 });
    }
}
