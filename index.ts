import { readStackConfig } from "./src/config";
import { NixosDeploy } from "./src/deploy";
import { BlogDns } from "./src/dns";
import { evaluateHost } from "./src/host";
import { NixosInstall } from "./src/install";
import { toplevelAttribute } from "./src/nixEval";
import { preflight, stackLabels } from "./src/preflight";
import { BlogServer } from "./src/server";

// Everything is checked here, before the first resource: bad config fails `pulumi preview`.
const config = readStackConfig();
const { host, toplevel } = evaluateHost(config);
const closure = config.systemClosure ?? toplevel;

// Hetzner (server type, location, disk) and Cloudflare (the zone) are asked next; every Hetzner
// resource takes its labels from this check, so none is created unless all of it passes.
const { labels, selector } = stackLabels(host.domain);
const ready = preflight({
    serverType: config.serverType,
    location: config.location,
    system: host.system,
    domain: host.domain,
    cloudflareZoneId: config.cloudflareZoneId,
    selector,
});

const server = new BlogServer("blog", {
    serverType: config.serverType,
    location: config.location,
    image: config.image,
    system: host.system,
    labels: ready.apply(() => labels),
});

const dns = new BlogDns("blog", {
    zoneId: config.cloudflareZoneId,
    domain: host.domain,
    ipv4: server.ipv4,
    ipv6: server.ipv6,
    ttl: config.ttl,
    proxied: config.proxied,
});

// DNS first: the host asks for its certificate (ACME HTTP-01) as soon as it boots.
const install = new NixosInstall(
    "blog",
    {
        serverId: server.id,
        targetHost: server.ipv4,
        flake: config.flake,
        nixosConfiguration: config.nixosConfiguration,
        bootstrapPrivateKey: server.bootstrapPrivateKey,
        sshPrivateKey: config.sshPrivateKey,
    },
    { dependsOn: [dns] },
);

const deploy = new NixosDeploy(
    "blog",
    {
        systemClosure: closure,
        flakeAttribute:
            config.systemClosure === undefined ? toplevelAttribute(config.flake, config.nixosConfiguration) : undefined,
        targetHost: server.ipv4,
        hostKey: install.publicHostKey,
        domain: host.domain,
        sshPrivateKey: config.sshPrivateKey,
    },
    { dependsOn: [install] },
);

export const ipv4 = server.ipv4;
export const ipv6 = server.ipv6;
export const url = `https://${host.domain}/`;
export const serverId = server.id;
export const hostKey = install.publicHostKey;
export const systemClosure = deploy.systemClosure;
export const nixosConfiguration = config.nixosConfiguration;
