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
    /**
     * How the health check treats an ACME certificate the host has never had (blog.host.tls
     * "acme"): `placeholder` accepts the ACME module's self-signed placeholder, for a check before
     * the records point at the host; `issued` orders it and waits for it, after. Defaults to off.
     */
    healthAcme?: "placeholder" | "issued";
    /** Show the host's addresses as placeholders in the deploy's output (behind Cloudflare's proxy); defaults to false. */
    hideAddresses?: boolean;
}

/** What the deploy prints last on stdout on success (scripts/deploy.sh report_deployed). */
const DEPLOYED_LINE = /^BLOG_DEPLOYED_SYSTEM=(\/nix\/store\/[0123456789abcdfghijklmnpqrsvwxyz]{32}-[0-9A-Za-z+._?=-]+)$/;

/**
 * The system the deploy reported the host runs: the last `BLOG_DEPLOYED_SYSTEM=<store path>` line
 * of its stdout, if it is exactly that; undefined otherwise.
 */
export function deployedSystem(stdout: string | undefined): string | undefined {
    const lines = (stdout ?? "").split("\n").map((l) => l.replace(/\r$/, ""));
    for (let i = lines.length - 1; i >= 0; i--) {
        const m = DEPLOYED_LINE.exec(lines[i]);
        if (m) return m[1];
    }
    return undefined;
}

/** The deploy's environment: everything scripts/deploy.sh reads, the secrets as secrets. */
function deployEnvironment(args: NixosDeployArgs, withSecrets: boolean): Record<string, pulumi.Input<string>> {
    const environment: Record<string, pulumi.Input<string>> = {
        SYSTEM_CLOSURE: args.systemClosure,
        TARGET_HOST: args.targetHost,
        TARGET_PORT: pulumi.output(args.targetPort ?? 22).apply(String),
        TARGET_USER: "root",
        HOST_KEY: args.hostKey,
        DOMAIN: args.domain,
        HEALTH_URL: pulumi.interpolate`https://${args.domain}/`,
        // Ask this host through each published address, whatever DNS resolvers still cache.
        PUBLISHED_ADDRESSES: pulumi.all(args.publishedAddresses).apply((addresses) => addresses.join(" ")),
        DEPLOY_ORIGIN: args.origin,
    };
    if (args.flakeAttribute !== undefined) environment.FLAKE_ATTR = args.flakeAttribute;
    if (args.sshPrivateKey !== undefined) environment.SSH_PRIVATE_KEY = pulumi.secret(args.sshPrivateKey);
    if (args.healthPinnedKey !== undefined) environment.HEALTH_PINNED_KEY = args.healthPinnedKey;
    if (args.healthVia !== undefined) environment.HEALTH_VIA = args.healthVia;
    if (args.healthAcme !== undefined) environment.HEALTH_ACME = args.healthAcme;
    if (args.hideAddresses) environment.HIDE_ADDRESSES = "1";
    if (withSecrets) {
        // One variable per secret: a changed value is an update of that key alone (its old and
        // new values both shown as [secret]), and the names stay readable in the diff.
        const secrets = Object.entries(args.hostSecrets ?? {}).sort(([a], [b]) => a.localeCompare(b));
        environment.HOST_SECRETS = secrets.map(([name]) => name).join(" ");
        for (const [name, value] of secrets) environment[`HOST_SECRET_${name}`] = pulumi.secret(value);
    }
    return environment;
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
    /** The system the host last accepted, from the deploy's own report; null if it never reported one. */
    public readonly systemClosure: pulumi.Output<string>;

    constructor(name: string, args: NixosDeployArgs, opts?: pulumi.ComponentResourceOptions) {
        super("blog:nixos:Deploy", name, {}, opts);

        const environment = deployEnvironment(args, true);

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
        // What the host accepted, as the deploy reported it: a failed deploy changes nothing
        // here (the engine keeps the command's last successful state). The command's stdout is
        // secret; only a value that is exactly a store path is taken out of it, unsecret.
        this.systemClosure = pulumi.unsecret(this.command.stdout.apply((out) => deployedSystem(out) ?? null)) as pulumi.Output<string>;
        this.registerOutputs({ systemClosure: this.systemClosure });
    }
}

/**
 * The health check again once the records point at the host (scripts/deploy.sh with
 * HEALTH_ACME=issued and no secrets: the host runs the system already, so nothing changes on it).
 * Before the records moved, the deploy could only accept the ACME module's placeholder certificate
 * of a host that never had its own; here it orders it and waits for it, then checks the site in
 * full. It runs whenever the deploy's inputs but the secrets change: a new system, a new host, new
 * addresses, a new domain. A failure fails `pulumi up` with exit 5 and the deploy's message; a
 * replaced server is then not deleted (the engine deletes replaced resources only at the end of a
 * successful update).
 */
export class NixosCheck extends pulumi.ComponentResource {
    public readonly command: command.local.Command;

    constructor(name: string, args: Omit<NixosDeployArgs, "hostSecrets" | "healthAcme">, opts?: pulumi.ComponentResourceOptions) {
        super("blog:nixos:Check", name, {}, opts);
        this.command = new command.local.Command(
            `${name}-check`,
            {
                create: DEPLOY_COMMAND,
                update: DEPLOY_COMMAND,
                environment: deployEnvironment({ ...args, healthAcme: "issued" }, false),
                addPreviousOutputInEnv: false,
            },
            { parent: this, additionalSecretOutputs: ["stdout", "stderr"] },
        );
        this.registerOutputs({});
    }
}
