import * as command from "@pulumi/command";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";

/** Relative to the project directory, where Pulumi runs the commands. */
export const DATA_ATTACH_COMMAND = "bash scripts/data-volume.sh attach";
export const DATA_RELEASE_COMMAND = "bash scripts/data-volume.sh release";

export interface DataVolumeArgs {
    /** Size in GB (10 to 10240) of a new volume; Hetzner grows a volume in place and never shrinks one. Unset with `existing`. */
    size?: pulumi.Input<number>;
    /** A volume you have, used instead of a new one and never deleted by the stack: its id, name and device path. */
    existing?: pulumi.Input<{ id: string; name: string; linuxDevice: string }>;
    /** Hetzner location, the server's: a volume never leaves its location. No default. */
    location: pulumi.Input<string>;
    /** The server the volume is attached to (its Hetzner id). No default. */
    serverId: pulumi.Input<string>;
    /** Whether destroying the stack, or removing the volume from it, deletes the volume; defaults to false (it stays at Hetzner). */
    deleteOnDestroy?: boolean;
    /** Labels of the volume; defaults to none. */
    labels?: pulumi.Input<Record<string, pulumi.Input<string>>>;
    /** How the attach and release commands reach the server: address, SSH port, pinned host key, login key (secret). */
    target: {
        host: pulumi.Input<string>;
        port: pulumi.Input<number>;
        hostKey: pulumi.Input<string>;
        sshPrivateKey?: pulumi.Input<string>;
        /** Show the host's address as a placeholder in the scripts' output (behind Cloudflare's proxy); defaults to false. */
        hideAddresses?: boolean;
    };
}

/**
 * A Hetzner Volume for the services' state (the host mounts it at /data by its label, blog-data),
 * attached to the server once NixOS is installed, so that no install ever sees it.
 *
 * Moving it to a new server (a replacement) happens in this order, enforced by the graph:
 * the release command runs against the OLD server (its delete: services stop, the volume is
 * unmounted), the old attachment is deleted (detach), the new one is created (attach), then the
 * attach command labels the filesystem if it is new and brings it into use, and only then does
 * the deploy run. The release command is a dependent of the attachment, so the engine deletes
 * it first; the attachment is delete-before-replace, as a volume attaches to one server at a time.
 */
export class DataVolume extends pulumi.ComponentResource {
    /** The volume the stack created; undefined for a volume you have. */
    public readonly volume?: hcloud.Volume;
    public readonly attachment: hcloud.VolumeAttachment;
    public readonly use: command.local.Command;
    /** The volume's name at Hetzner. */
    public readonly name: pulumi.Output<string>;
    public readonly id: pulumi.Output<string>;

    constructor(name: string, args: DataVolumeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("blog:hetzner:DataVolume", name, {}, opts);
        const keep = !args.deleteOnDestroy;
        const existing = args.existing === undefined ? undefined : pulumi.output(args.existing);

        this.volume = existing ? undefined : new hcloud.Volume(
            `${name}-volume`,
            {
                size: args.size!,
                location: args.location,
                // Hetzner formats a new volume once; nothing in this project ever formats it again.
                format: "ext4",
                automount: false,
                // The API itself refuses to delete a protected volume, whoever asks.
                deleteProtection: keep,
                labels: args.labels,
            },
            // Removing it from the stack (destroy, volumeSize 0) leaves it at Hetzner, data intact.
            { parent: this, retainOnDelete: keep },
        );

        this.id = existing ? existing.id : this.volume!.id;
        this.name = existing ? existing.name : this.volume!.name;
        const device = existing ? existing.linuxDevice : this.volume!.linuxDevice;

        this.attachment = new hcloud.VolumeAttachment(
            `${name}-attachment`,
            {
                volumeId: this.id.apply(Number),
                serverId: pulumi.output(args.serverId).apply(Number),
                // The host mounts it itself, by label; Hetzner's automount would mount it elsewhere.
                automount: false,
            },
            // A volume is attached to one server at a time: the old attachment goes first.
            { parent: this, deleteBeforeReplace: true },
        );

        const environment: Record<string, pulumi.Input<string>> = {
            TARGET_HOST: args.target.host,
            TARGET_PORT: pulumi.output(args.target.port).apply(String),
            TARGET_USER: "root",
            HOST_KEY: args.target.hostKey,
            DATA_DEVICE: device,
        };
        // A new size is an update that runs the attach again, which grows the file system to it.
        if (!existing) environment.DATA_SIZE = pulumi.output(args.size!).apply(String);
        if (args.target.sshPrivateKey !== undefined) environment.SSH_PRIVATE_KEY = pulumi.secret(args.target.sshPrivateKey);
        if (args.target.hideAddresses) environment.HIDE_ADDRESSES = "1";

        this.use = new command.local.Command(
            `${name}-use`,
            {
                create: DATA_ATTACH_COMMAND,
                // Runs with the environment it was created with: against the server the volume leaves.
                delete: DATA_RELEASE_COMMAND,
                environment,
                // This volume on this server: another server or volume is a new use (release, then attach).
                triggers: [this.attachment.serverId, this.attachment.volumeId],
                addPreviousOutputInEnv: false,
            },
            { parent: this, dependsOn: [this.attachment], additionalSecretOutputs: ["stdout", "stderr"] },
        );

        this.registerOutputs({ name: this.name, id: this.id });
    }
}
