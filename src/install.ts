import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";

/** Relative to the project directory, where Pulumi runs the commands; an absolute path would differ per checkout. */
export const INSTALL_COMMAND = "bash scripts/install.sh";
/** What an update runs: the install itself runs once per server (on create or replacement), never again. */
export const INSTALL_UPDATE_COMMAND =
    "echo 'blog: NixOS is installed once per server; later changes reach the host through the deploy.'";

export interface NixosInstallArgs {
    /** Identity of the machine (the server id, or an existing machine's address); a new one reinstalls, nothing else does. No default. */
    machineId: pulumi.Input<string>;
    /** Address the installer connects to. No default. */
    targetHost: pulumi.Input<string>;
    /** SSH port; defaults to 22. */
    targetPort?: pulumi.Input<number>;
    /** Every address the DNS records publish (A and AAAA): the installed host must answer SSH on each. No default. */
    publishedAddresses: pulumi.Input<string>[];
    /** Flake reference; the stack config defaults to `./nix`. */
    flake: pulumi.Input<string>;
    /** Name under `nixosConfigurations`; the stack config defaults to `blog`. */
    nixosConfiguration: pulumi.Input<string>;
    /** Private key the machine accepts before the install (secret): a Hetzner server's bootstrap key; defaults to the admin key below. */
    bootstrapPrivateKey?: pulumi.Input<string>;
    /**
     * The host key the machine presents before the install, pinned from the first connection: a Hetzner
     * server's bootstrap host key (its user data), or a machine's current key (`installHostKey`). No default.
     */
    bootstrapHostKey: pulumi.Input<string>;
    /** Private key the installed system accepts, one of the admins' (secret); defaults to the operator's ssh-agent. */
    sshPrivateKey?: pulumi.Input<string>;
    /** Show the host's addresses as placeholders in the install's output (behind Cloudflare's proxy); defaults to false. */
    hideAddresses?: boolean;
}

/**
 * Turns the stock server into NixOS with the flake's pinned nixos-anywhere, and pins the
 * host's SSH identity: the stack generates the host key, the install places it, and every
 * later connection checks it.
 */
export class NixosInstall extends pulumi.ComponentResource {
    public readonly hostKey: tls.PrivateKey;
    /** The host's public key line ("ssh-ed25519 AAAA..."), the only key commands accept from the host. */
    public readonly publicHostKey: pulumi.Output<string>;
    public readonly command: command.local.Command;

    constructor(name: string, args: NixosInstallArgs, opts?: pulumi.ComponentResourceOptions) {
        super("blog:nixos:Install", name, {}, opts);

        this.hostKey = new tls.PrivateKey(`${name}-host-key`, { algorithm: "ED25519" }, { parent: this });
        this.publicHostKey = this.hostKey.publicKeyOpenssh.apply((key) => key.trim());

        const environment: Record<string, pulumi.Input<string>> = {
            TARGET_HOST: args.targetHost,
            TARGET_PORT: pulumi.output(args.targetPort ?? 22).apply(String),
            PUBLISHED_ADDRESSES: pulumi.all(args.publishedAddresses).apply((addresses) => addresses.join(" ")),
            TARGET_USER: "root",
            HOST_KEY: this.publicHostKey,
            HOST_KEY_PRIVATE: pulumi.secret(this.hostKey.privateKeyOpenssh),
            BOOTSTRAP_HOST_KEY: args.bootstrapHostKey,
            FLAKE: args.flake,
            NIXOS_CONFIGURATION: args.nixosConfiguration,
        };
        if (args.bootstrapPrivateKey !== undefined) {
            environment.BOOTSTRAP_SSH_PRIVATE_KEY = pulumi.secret(args.bootstrapPrivateKey);
        }
        if (args.sshPrivateKey !== undefined) environment.SSH_PRIVATE_KEY = pulumi.secret(args.sshPrivateKey);
        if (args.hideAddresses) environment.HIDE_ADDRESSES = "1";

        this.command = new command.local.Command(
            `${name}-nixos-anywhere`,
            {
                create: INSTALL_COMMAND,
                update: INSTALL_UPDATE_COMMAND,
                environment,
                triggers: [args.machineId],
                addPreviousOutputInEnv: false,
            },
            {
                parent: this,
                // With an `update` command set, a changed trigger would only update; a new
                // server must be installed, so a changed trigger replaces (runs create again).
                replaceOnChanges: ["triggers"],
                additionalSecretOutputs: ["stdout", "stderr"],
            },
        );
        this.registerOutputs({ publicHostKey: this.publicHostKey });
    }
}
