import * as pulumi from "@pulumi/pulumi";
import { BackupRepository, checkStorageBox, repositoryStatus, statusMessages } from "./src/backup";
import { readStackConfig } from "./src/config";
import { NixosCheck, NixosDeploy } from "./src/deploy";
import { BlogDns, HetznerDns, addressRecords } from "./src/dns";
import { evaluateHost } from "./src/host";
import { checkHostDrift } from "./src/hostStatus";
import { NixosInstall } from "./src/install";
import { ageRecipient } from "./src/keys";
import { existingMachine, hetznerMachine } from "./src/machine";
import { toplevelAttribute } from "./src/nixEval";
import { CloudflareOrigin } from "./src/origin";
import { preflight, rrsetName, stackLabels } from "./src/preflight";
import { timed, timing } from "./src/timings";
import { DataVolume } from "./src/volume";

// BLOG_TIMINGS=<file>: where the program's time goes (src/timings.ts). Node's start, the
// compilation and the SDKs' loading come first: the imports above have run by now.
timing("program-loaded", process.uptime() * 1000);
process.on("exit", () => timing("program-exit", process.uptime() * 1000));

// Everything is checked here, before the first resource: bad config fails `pulumi preview`.
const config = readStackConfig();
const { host, toplevel, warnings } = timed("nix-eval", () => evaluateHost(config));
warnings.forEach((w) => pulumi.log.warn(w));
const closure = config.systemClosure ?? toplevel;

// Hetzner (server type, location, disk) and the DNS provider (the zone) are asked next; every
// resource waits for the answers, so none is created unless all of them pass.
const { labels, selector } = stackLabels(host.domain);
const checked = preflight({
    domain: host.domain,
    placement:
        config.host === "hetzner"
            ? { serverType: config.serverType, location: config.location, system: host.system, selector }
            : undefined,
    dns: config.dns,
    cloudflareZoneId: config.cloudflareZoneId,
    requireStrictSsl: config.proxied && !config.manageSslMode,
    data:
        config.host === "hetzner"
            ? { volumeSize: config.volumeSize, deleteOnDestroy: config.deleteDataOnDestroy, existingId: config.dataVolumeId }
            : undefined,
});
const preflightStart = performance.now();
checked.apply(() => timing("preflight", performance.now() - preflightStart));
const checkedLabels = checked.apply(() => labels);

// Behind Cloudflare's proxy: the origin's certificate (Cloudflare's Origin CA) and Cloudflare's ranges.
const origin = config.proxied
    ? new CloudflareOrigin(
          "blog",
          // Nothing is asked of Cloudflare before the preflight checks pass.
          { zoneId: checked.apply(() => config.cloudflareZoneId), domain: checked.apply(() => host.domain), manageSslMode: config.manageSslMode },
      )
    : undefined;

// Backups off the host: the repository's credentials (made, or adopted), and what it holds now,
// asked of the repository itself at every preview and update.
const backupTarget = config.backup.target;
const backups =
    backupTarget.kind !== "none"
        ? new BackupRepository("blog", {
              target: backupTarget,
              password: config.backup.password,
              domain: host.domain,
              labels: checkedLabels,
              checked: backupTarget.kind === "storagebox" ? pulumi.all([checked, checkStorageBox(backupTarget.storageBoxId)]) : checked,
          })
        : undefined;
if (backups) {
    pulumi.all([repositoryStatus(backups.statusEnvironment), checked]).apply(([status, c]) => {
        const messages = statusMessages(status, c.dataRisks ?? []);
        messages.info.forEach((m) => pulumi.log.info(m));
        messages.warnings.forEach((m) => pulumi.log.warn(m));
    });
}

// Where the host comes from: a new Hetzner server, or a machine you have.
const machine =
    config.host === "hetzner"
        ? hetznerMachine("blog", {
              serverType: config.serverType,
              location: config.location,
              image: config.image,
              system: host.system,
              labels: checkedLabels,
              backups: config.backups,
              webSourceIps: config.httpFromCloudflareOnly ? origin!.ranges : undefined,
              liveSystem: checked.apply((c) => c.liveSystem),
              hideAddresses: config.proxied,
          })
        : existingMachine(config.existing!, checked);

// Behind Cloudflare's proxy the origin's addresses are what the proxy hides: secret wherever the
// engine would show them (a preview's diff, the outputs), and placeholders in what the commands print.
const hideAddresses = config.proxied;
const hidden = (a: pulumi.Output<string> | undefined) => (a !== undefined && hideAddresses ? pulumi.secret(a) : a);
const addresses = { ipv4: hidden(machine.ipv4), ipv6: hidden(machine.ipv6), ssh: hidden(machine.address)! };

// The install and the deploy check the host through every address it will publish.
const published = [addresses.ipv4, addresses.ipv6].filter((a): a is pulumi.Output<string> => a !== undefined);

// A machine the stack creates, or is told to install, gets NixOS from nixos-anywhere first.
const install = machine.install
    ? new NixosInstall("blog", {
          machineId: machine.install.id,
          targetHost: addresses.ssh,
          targetPort: machine.sshPort,
          publishedAddresses: published,
          flake: config.flake,
          nixosConfiguration: config.nixosConfiguration,
          bootstrapPrivateKey: machine.install.bootstrapPrivateKey,
          bootstrapHostKey: machine.install.bootstrapHostKey,
          sshPrivateKey: config.sshPrivateKey,
          hideAddresses,
      })
    : undefined;

// The key every later connection pins: the one the install placed, or the machine's own.
const pinnedHostKey = install ? install.publicHostKey : machine.hostKey!;

// The services' state on a volume that outlives the server, attached once NixOS is installed.
const data =
    config.volumeSize > 0 || config.dataVolumeId !== undefined
        ? new DataVolume(
              "blog",
              {
                  size: config.volumeSize > 0 ? config.volumeSize : undefined,
                  existing: config.dataVolumeId !== undefined ? checked.apply((c) => c.existingVolume!) : undefined,
                  location: config.location,
                  serverId: machine.serverId!,
                  deleteOnDestroy: config.deleteDataOnDestroy,
                  labels: checkedLabels,
                  target: { host: addresses.ssh, port: machine.sshPort, hostKey: pinnedHostKey, sshPrivateKey: config.sshPrivateKey, hideAddresses },
              },
              { dependsOn: install ? [install] : [] },
          )
        : undefined;

// The deploy puts the system on the host and checks its health before the records point at it
// (an unhealthy new host never gets the site's name, and a replaced server is kept): a host that
// never had its ACME certificate (HTTP-01 needs the records) passes with the ACME module's
// self-signed placeholder here, and is checked again in full once the records moved.
const deployArgs = {
    systemClosure: closure,
    flakeAttribute:
        config.systemClosure === undefined ? toplevelAttribute(config.flake, config.nixosConfiguration) : undefined,
    targetHost: addresses.ssh,
    targetPort: machine.sshPort,
    publishedAddresses: published,
    hideAddresses,
    origin: `pulumi ${pulumi.getProject()}/${pulumi.getStack()}`,
    hostKey: pinnedHostKey,
    domain: host.domain,
    sshPrivateKey: config.sshPrivateKey,
    hostSecrets: { ...config.hostSecrets, ...origin?.hostSecrets, ...backups?.hostSecrets },
    healthPinnedKey: host.tls === "cloudflare-origin" ? origin!.pin : undefined,
    // The firewall admits HTTP(S) from Cloudflare only: check the site from the host itself.
    healthVia: config.httpFromCloudflareOnly ? ("ssh" as const) : undefined,
};
const deploy = new NixosDeploy(
    "blog",
    { ...deployArgs, healthAcme: host.tls === "acme" ? "placeholder" : undefined },
    { dependsOn: data ? [data] : install ? [install] : [] },
);

// A preview of a stack that has deployed asks the host (read-only, bounded) whether it still runs
// the stack's last deployed system: a hand rollback or switch is a warning naming the command that
// puts the stack's system back. Without an SSH key here (a pull request's preview) it only says so.
checkHostDrift({
    targetHost: addresses.ssh,
    targetPort: machine.sshPort,
    hostKey: pinnedHostKey,
    sshPrivateKey: config.sshPrivateKey,
    planned: closure,
    deployUrn: deploy.command.urn,
});

// Where its records live: they move to the host only once the deploy has checked it.
const dnsArgs = { domain: host.domain, ipv4: addresses.ipv4, ipv6: addresses.ipv6, ttl: config.ttl };
const dns =
    config.dns === "cloudflare"
        ? new BlogDns("blog", { ...dnsArgs, zoneId: config.cloudflareZoneId, proxied: config.proxied }, { dependsOn: [deploy] })
        : config.dns === "hetzner"
          ? new HetznerDns(
                "blog",
                {
                    ...dnsArgs,
                    zone: checked.apply((c) => c.hetznerZone!),
                    relativeName: checked.apply((c) => rrsetName(host.domain, c.hetznerZone!)),
                    labels: checkedLabels,
                },
                { dependsOn: [deploy] },
            )
          : undefined;

// Once the records point at the host, its ACME certificate can be ordered: the check again, in full.
if (dns && host.tls === "acme") {
    const { hostSecrets: _secrets, ...checkArgs } = deployArgs;
    new NixosCheck("blog", checkArgs, { dependsOn: [dns] });
}

// null, not undefined, where a kind of host has no such value: Pulumi warns about undefined outputs.
export const ipv4 = addresses.ipv4 ?? null;
export const ipv6 = addresses.ipv6 ?? null;
export const url = `https://${host.domain}/`;
export const serverId = machine.serverId ?? null;
export const hostKey = pinnedHostKey;
/** The host key's age recipient, for sops-nix or agenix (null when the host key is not ed25519). */
export const hostAgeKey = pulumi.output(pinnedHostKey).apply((k) => (k.startsWith("ssh-ed25519 ") ? ageRecipient(k) : null));
export const systemClosure = deploy.systemClosure;
export const nixosConfiguration = config.nixosConfiguration;
/** The data volume (Hetzner) that `pulumi destroy` leaves in place unless blog:dataVolumeDeleteOnDestroy: null without one. */
export const dataVolume = data
    ? pulumi.output({ name: data.name, id: data.id, keptOnDestroy: config.dataVolumeId !== undefined || !config.deleteDataOnDestroy })
    : null;
/** Where the backups go (null without): the target and restic's repository string, which holds no credential. */
export const backup = backupTarget.kind !== "none" ? pulumi.output({ target: backupTarget.kind, repository: backups!.repository }) : null;
/** The repository password (secret; `pulumi stack output --show-secrets backupPassword`): without it the backups cannot be read. */
export const backupPassword = backups ? backups.password : null;
/** The site's address records and where they live (`dns: none`: you create them at your DNS provider). */
export const dnsRecords = pulumi
    .output(addressRecords(host.domain, addresses.ipv4, addresses.ipv6))
    .apply((records) => records.map((r) => ({ ...r, managedBy: config.dns === "none" ? "you" : config.dns })));
