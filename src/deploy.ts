import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";

/** Relative to the project directory, where Pulumi runs the commands. */
export const DEPLOY_COMMAND = "bash scripts/deploy.sh";

export interface NixosDeployArgs {
    /** Store path of the system to run; a new path is an in-place update that deploys again. No default. */
    systemClosure: pulumi.Input<string>;
    /** Flake attribute that builds the closure when it is not in the local store; defaults to none (realise the path as is). */
    flakeAttribute?: pulumi.Input<string>;
    /** Address the deploy connects to. No default. */
    targetHost: pulumi.Input<string>;
    /** SSH port; defaults to 22. */
    targetPort?: pulumi.Input<number>;
    /** Every address the DNS records publish (A and AAAA): the health check asks the site through each. No default. */
    publishedAddresses: pulumi.Input<string>[];
    /** Who deploys, shown to a second deploy that finds the host's lock held. No default. */
    origin: string;
    /** The host's pinned public key line. No default. */
    hostKey: pulumi.Input<string>;
    /** The site's domain: the health check asks https://<domain>/ of this very host. No default. */
    domain: pulumi.Input<string>;
    /** Private key to log in with (secret); defaults to the operator's ssh-agent. */
    sshPrivateKey?: pulumi.Input<string>;
    /**
     * Secrets the host gets in /var/lib/blog-secrets before activation, by name: the complete set
     * (a name left out is removed from the host). Each value is kept secret. Defaults to none.
     */
    hostSecrets?: Record<string, pulumi.Input<string>>;
    /** Pin of the key the site's certificate must carry (`sha256//<base64>`) instead of a public CA's; defaults to none. */
    healthPinnedKey?: pulumi.Input<string>;
    /**
     * How the health check reaches the site: `direct` (through each published address, the default)
     * or `ssh` (through the SSH connection, at the host's own port: a firewall that admits only
     * Cloudflare's addresses keeps everyone else out).
     */
    healthVia?: "direct" | "ssh";
    /** Show the host's addresses as placeholders in the deploy's output (behind Cloudflare's proxy); defaults to false. */
    hideAddresses?: boolean;
}

/**
 * Pushes the system closure to the host and activates it, with a health check and automatic
 * rollback (scripts/deploy.sh). A new closure changes `SYSTEM_CLOSURE` in the environment: an
 * in-place update that runs `update` (the deploy) again, and whose diff shows the old and the new
 * store path (the engine keeps secrecy per key, so the secret key beside it stays hidden alone).
 * No `triggers`: pulumi-command declares them replace-on-change, and a replace would run the
 * deploy as a create. An unchanged closure is no change at all, in preview too. Host secrets
 * travel the same way: a changed secret alone is an update that delivers it.
 */
export class NixosDeploy extends pulumi.ComponentResource {
    public readonly command: command.local.Command;
    public readonly systemClosure: pulumi.Output<string>;

    constructor(name: string, args: NixosDeployArgs, opts?: pulumi.ComponentResourceOptions) {
        super("blog:nixos:Deploy", name, {}, opts);

        const environment: Record<string, pulumi.Input<string>> = {
            SYSTEM_CLOSURE: args.systemClosure,
            TARGET_HOST: args.targetHost,
            TARGET_PORT: pulumi.output(args.targetPort ?? 22).apply(String),
            TARGET_USER: "root",
            HOST_KEY: args.hostKey,
            DOMAIN: args.domain,
            HEALTH_URL: pulumi.interpolate`https://${args.domain}/`,
            // Ask this host, whatever DNS resolvers still cache.
            // Ask this host through each published address, whatever DNS resolvers still cache.
            PUBLISHED_ADDRESSES: pulumi.all(args.publishedAddresses).apply((addresses) => addresses.join(" ")),
            DEPLOY_ORIGIN: args.origin,
        };
        if (args.flakeAttribute !== undefined) environment.FLAKE_ATTR = args.flakeAttribute;
        if (args.sshPrivateKey !== undefined) environment.SSH_PRIVATE_KEY = pulumi.secret(args.sshPrivateKey);
        if (args.healthPinnedKey !== undefined) environment.HEALTH_PINNED_KEY = args.healthPinnedKey;
        if (args.healthVia !== undefined) environment.HEALTH_VIA = args.healthVia;
        if (args.hideAddresses) environment.HIDE_ADDRESSES = "1";
        // One variable per secret: a changed value is an update of that key alone (its old and
        // new values both shown as [secret]), and the names stay readable in the diff.
        const secrets = Object.entries(args.hostSecrets ?? {}).sort(([a], [b]) => a.localeCompare(b));
        environment.HOST_SECRETS = secrets.map(([name]) => name).join(" ");
        for (const [name, value] of secrets) environment[`HOST_SECRET_${name}`] = pulumi.secret(value);

        this.command = new command.local.Command(
            `${name}-switch`,
            {
                create: DEPLOY_COMMAND,
                update: DEPLOY_COMMAND,
                environment,
                addPreviousOutputInEnv: false,
            },
            { parent: this, additionalSecretOutputs: ["stdout", "stderr"] },
        );
        this.systemClosure = pulumi.output(args.systemClosure);
        this.registerOutputs({ systemClosure: this.systemClosure });
    }
}
