import * as pulumi from "@pulumi/pulumi";
import { ExistingHost } from "./config";
import { BlogServer, BlogServerArgs } from "./server";

/** The machine the site runs on, whoever made it: what DNS, the install and the deploy need of it. */
export interface Machine {
    /** Public IPv4 address (the A record), if it has one. */
    ipv4?: pulumi.Output<string>;
    /** Public IPv6 address (the AAAA record), if it has one. */
    ipv6?: pulumi.Output<string>;
    /** The address SSH connects to. */
    address: pulumi.Output<string>;
    sshPort: number;
    /** Hetzner's id of the server the stack created. */
    serverId?: pulumi.Output<string>;
    /** The host key of a machine the stack does not install (from config). */
    hostKey?: pulumi.Output<string>;
    /**
     * Set when nixos-anywhere installs the machine: its identity (a new one reinstalls), the login key
     * it accepts first, and the host key it presents until the install (pinned from the first packet).
     */
    install?: { id: pulumi.Output<string>; bootstrapPrivateKey?: pulumi.Output<string>; bootstrapHostKey: pulumi.Output<string> };
}

/** "type base64" of a key line, the comment dropped: the scripts compare the key itself. */
function keyLine(line: string): string {
    return line.trim().split(/\s+/).slice(0, 2).join(" ");
}

/** A new Hetzner Cloud server (see server.ts), installed by the stack. */
export function hetznerMachine(name: string, args: BlogServerArgs): Machine {
    const server = new BlogServer(name, args);
    return {
        ipv4: server.ipv4,
        ipv6: server.ipv6,
        address: server.ipv4,
        sshPort: 22,
        serverId: server.id,
        install: { id: server.id, bootstrapPrivateKey: server.bootstrapPrivateKey, bootstrapHostKey: server.bootstrapHostPublicKey },
    };
}

/**
 * A machine you already have. Nothing is created for it: its values come from the stack config,
 * released only once `checked` (the preflight checks) resolves, so nothing that uses them starts
 * before every check has passed.
 */
export function existingMachine(e: ExistingHost, checked: pulumi.Output<unknown>): Machine {
    const after = (value: string) => checked.apply(() => value);
    const address = after(e.ipv4 ?? e.ipv6!);
    if (e.install) {
        // In every preview and update while install is on: the plan shows whether the install runs.
        pulumi.log.warn(
            `blog:install is true: whenever this plan creates or replaces blog-nixos-anywhere, nixos-anywhere ` +
                `ERASES THE DISK of ${e.ipv4 ?? e.ipv6} (confirmed by blog:wipeDiskOf). An unchanged install does nothing.`,
        );
    }
    return {
        ipv4: e.ipv4 === undefined ? undefined : after(e.ipv4),
        ipv6: e.ipv6 === undefined ? undefined : after(e.ipv6),
        address,
        sshPort: e.sshPort,
        // "type base64", the comment dropped: the deploy compares the key itself.
        hostKey: e.hostKey === undefined ? undefined : after(keyLine(e.hostKey)),
        // The machine's address is its identity: another address is another machine, installed anew.
        // Its current host key (read out of band) is what the install accepts before it, nothing else.
        install: e.install ? { id: address, bootstrapHostKey: after(keyLine(e.installHostKey!)) } : undefined,
    };
}
