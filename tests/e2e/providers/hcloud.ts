// Stand-in for pulumi-resource-hcloud (@pulumi/hcloud 1.41.0): the resources `Server`, `SshKey`,
// `Firewall` and the invokes getServerType(s), getLocation(s), getDatacenter(s), getServers, over a
// fake Hetzner Cloud kept in $BLOG_E2E_CLOUD_DIR/hcloud.json whose servers are real SSH targets;
// with DNS (`Zone`, `ZoneRrset`, getZone, getZones: hcloud-dns.ts) and volumes (`Volume`,
// `VolumeAttachment`: hcloud-volumes.ts). The project's records, the catalog and the shared rules
// are in lib/hcloud-api.ts.
//
// What it models, and where that comes from:
//   pulumi/pulumi-hcloud (master at c3608de6, bridging hetznercloud/terraform-provider-hcloud
//   v1.66.1 with pulumi-terraform-bridge v3.135.0):
//     provider/resources.go                       SetAutonaming(255, "-") for every `name`
//     provider/cmd/pulumi-resource-hcloud/schema.json   properties, willReplaceOnChanges, invoke shapes
//   hetznercloud/terraform-provider-hcloud v1.66.1:
//     hcloud/provider.go                          token: exactly 64 characters (also from HCLOUD_TOKEN)
//     hcloud/plugin_provider.go                   a missing token fails Configure
//     internal/server/resource.go                 schema (ForceNew, defaults), Create's checks and
//                                                 their order, Update (power off, change_type with
//                                                 upgrade_disk = !keep_disk, backups through setBackups
//                                                 in place, firewalls), Delete, getServerAttributes
//                                                 (state; ipv6_address; backups from backup_window)
//     internal/sshkey/resource.go                 public_key RequiresReplace; name, labels in place
//     internal/firewall/resource.go, validation.go  rules, normalized IPs, delete detaches first
//     internal/servertype, location, datacenter/data_source.go   invoke results, not-found texts
//                                                 (ExactlyOneOf: terraform-plugin-framework-validators
//                                                 v0.19.0 internal/configvalidator/exactly_one_of.go)
//     internal/util/hcloudutil/error_sdk.go, error_framework.go  how API errors read
//     internal/util/datasourceutil/id.go          list ids (sha1 of the ids)
//   hetznercloud/hcloud-go v2.44.0 hcloud/error.go (`message (code, correlation id)`),
//     labels.go (label validation), exp/deprecationutil/server_type.go (deprecation messages).
// API refusals whose wording comes from users' reports: "server type has incompatible
// architecture (invalid_server_type)" (terraform-provider-hcloud#853, #1000), "cannot change type
// because the selected server_type has not sufficient disk space (invalid_server_type)" (#80),
// "unsupported location for server type (invalid_input)" (roots/trellis-cli#622), "SSH key not
// unique (uniqueness_error)" (atvirokodosprendimai/wgmesh#283, 2026), "error during placement
// (resource_unavailable)" (hetznercloud/packer-plugin-hcloud#198).
import { createHash } from "crypto";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { dnsFunctions, dnsResources } from "./hcloud-dns";
import { storageBoxFunctions, storageBoxResources } from "./hcloud-storagebox";
import { detachVolumesOf, volumeFunctions, volumeResources } from "./hcloud-volumes";
import { configFailure, multiError, resourceFailure } from "./lib/bridge";
import {
    Catalog,
    CatalogLocation,
    CatalogServerType,
    Deprecation,
    FirewallRecord,
    FirewallRuleRecord,
    ServerRecord,
    SshKeyRecord,
    apiError,
    catalog,
    compare,
    compareLabels,
    diffOf,
    exactlyOne,
    frameworkError,
    frameworkInvalidField,
    labelProblem,
    labelsOf,
    listId,
    locationOf,
    nameFor,
    nameTaken,
    notFound,
    now,
    project,
    sdkError,
    sdkInvalidInput,
    selects,
} from "./lib/hcloud-api";
import { CheckFailure, InitError, Invoke, ResourceType, serve } from "./lib/host";
import { fingerprintMd5, parsePublicKey } from "./lib/openssh";
import { pinnedVersion } from "./lib/repo";
import { cloudDir } from "./lib/store";
import { TargetInfo, powerOff, powerOn, startTarget, stopTarget } from "./lib/target";
import { DiffKind, Props, UNKNOWN, arr, bool, containsUnknown, deepEqual, isUnknown, num, obj, str } from "./lib/values";

// ---------------------------------------------------------------------------------------------
// Firewall (internal/firewall/resource.go: every attribute updates in place)

/** validation.go normalizeIP: an address becomes a /32 or /128, a CIDR keeps its host bits for the check. */
function normalizeIp(input: string): string {
    const [ip, bits] = input.split("/");
    const v6 = ip.includes(":");
    const canon = v6 ? canonicalV6(ip) : ip;
    if (canon === undefined) return input;
    return `${canon}/${bits ?? (v6 ? "128" : "32")}`;
}

function canonicalV6(ip: string): string | undefined {
    try {
        return new URL(`http://[${ip}]/`).hostname.replace(/^\[|\]$/g, "");
    } catch {
        return undefined;
    }
}

function cidrProblem(input: string): string | undefined {
    const n = normalizeIp(input);
    const m = /^(.*)\/(\d+)$/.exec(n);
    const ip = m?.[1] ?? "";
    const bits = Number(m?.[2]);
    const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
    if (v4 && v4.slice(1).every((o) => Number(o) <= 255) && bits <= 32) {
        const value = v4.slice(1).reduce((a, o) => a * 256 + Number(o), 0);
        const network = value - (value % 2 ** (32 - bits));
        if (network !== value) {
            const start = [24, 16, 8, 0].map((s) => Math.floor(network / 2 ** s) % 256).join(".");
            return `${input} is not the start of the cidr block ${start}/${bits}`;
        }
        return undefined;
    }
    if (ip.includes(":") && canonicalV6(ip) !== undefined && bits <= 128) return undefined;
    return `invalid CIDR address: ${input}`;
}

function rulesOf(v: unknown): FirewallRuleRecord[] {
    return (arr(v) ?? []).map((r) => {
        const rule = obj(r) ?? {};
        const out: FirewallRuleRecord = {
            direction: str(rule.direction) ?? "",
            protocol: str(rule.protocol) ?? "",
            source_ips: (arr(rule.sourceIps) ?? []).map((s) => normalizeIp(String(s))),
            destination_ips: (arr(rule.destinationIps) ?? []).map((s) => normalizeIp(String(s))),
        };
        if (str(rule.port) !== undefined) out.port = str(rule.port);
        if (str(rule.description) !== undefined) out.description = str(rule.description);
        return out;
    });
}

function ruleOutputs(rules: FirewallRuleRecord[]): Props[] {
    return rules.map((r) => {
        const out: Props = { direction: r.direction, protocol: r.protocol, sourceIps: r.source_ips, destinationIps: r.destination_ips };
        if (r.port !== undefined) out.port = r.port;
        if (r.description !== undefined) out.description = r.description;
        return out;
    });
}

function firewallOutputs(f: FirewallRecord): Props {
    return {
        name: f.name,
        labels: f.labels,
        rules: ruleOutputs(f.rules),
        applyTos: f.applied_to.map((a) => ({ labelSelector: "", server: a.server.id })),
    };
}

const firewall: ResourceType = {
    check(ctx, olds, news, seed) {
        const failures: CheckFailure[] = [];
        const { name, defaulted } = nameFor(ctx, olds, news, seed);
        const labels = labelProblem(news.labels);
        if (labels) failures.push(resourceFailure(labels.text, ctx.name, "labels"));
        (arr(news.rules) ?? []).forEach((r) => {
            const rule = obj(r) ?? {};
            const direction = str(rule.direction);
            if (direction !== undefined && !["in", "out"].includes(direction)) failures.push(resourceFailure(`${direction} is not a valid direction`, ctx.name, "rules"));
            const protocol = str(rule.protocol);
            if (protocol !== undefined && !["tcp", "udp", "icmp", "esp", "gre"].includes(protocol)) {
                failures.push(resourceFailure(`${protocol} is not a valid protocol`, ctx.name, "rules"));
            }
            for (const ip of [...(arr(rule.sourceIps) ?? []), ...(arr(rule.destinationIps) ?? [])]) {
                const problem = typeof ip === "string" && !isUnknown(ip) ? cidrProblem(ip) : undefined;
                if (problem) failures.push(resourceFailure(problem, ctx.name, "rules"));
            }
        });
        const inputs: Props = { ...news, name };
        if (defaulted) inputs.__defaults = ["name"];
        return { inputs, failures };
    },

    // terraform-provider-hcloud v1.66.1 internal/firewall/resource.go: no ForceNew, all in place.
    diff(_ctx, _id, _oldInputs, olds, news) {
        const acc: Record<string, DiffKind> = {};
        compare(acc, "name", olds.name, news.name);
        compareLabels(acc, olds.labels, news.labels ?? {});
        if (containsUnknown(news.rules)) acc.rules = "update";
        else compare(acc, "rules", ruleOutputs(rulesOf(olds.rules)), ruleOutputs(rulesOf(news.rules)));
        if (news.applyTos !== undefined) compare(acc, "applyTos", olds.applyTos, news.applyTos);
        return diffOf(acc);
    },

    async create(_ctx, news, preview) {
        if (preview) return { id: "", outs: { name: news.name, labels: news.labels ?? {}, rules: news.rules ?? [], applyTos: UNKNOWN } };
        const name = String(news.name);
        const record = await project.update((p) => {
            if (nameTaken(p.firewalls, name)) throw sdkError(apiError("name is already used", "uniqueness_error"));
            const f: FirewallRecord = { id: p.next_id++, name, labels: labelsOf(news.labels), rules: rulesOf(news.rules), applied_to: [], created: now() };
            p.firewalls[f.id] = f;
            return f;
        });
        return { id: String(record.id), outs: firewallOutputs(record) };
    },

    async read(_ctx, id, _state, inputs) {
        const f = project.read().firewalls[id];
        return f ? { id, props: firewallOutputs(f), inputs } : undefined;
    },

    async update(_ctx, id, olds, news, _oldInputs, preview) {
        if (preview) return { ...olds, name: news.name, labels: news.labels ?? {}, rules: news.rules ?? [] };
        const f = await project.update((p) => {
            const f = p.firewalls[id];
            if (!f) throw new Error(`firewall ${id} not found (not_found)`);
            const name = String(news.name);
            if (name !== f.name && nameTaken(p.firewalls, name, f.id)) throw sdkError(apiError("name is already used", "uniqueness_error"));
            f.name = name;
            f.labels = labelsOf(news.labels);
            f.rules = rulesOf(news.rules);
            return f;
        });
        return firewallOutputs(f);
    },

    // resourceFirewallDelete: detach every resource, then delete; a firewall already gone is fine.
    async delete(_ctx, id) {
        await project.update((p) => {
            const f = p.firewalls[id];
            if (!f) return;
            for (const a of f.applied_to) {
                const s = p.servers[a.server.id];
                if (s) s.firewall_ids = s.firewall_ids.filter((x) => x !== f.id);
            }
            delete p.firewalls[id];
        });
    },
};

// ---------------------------------------------------------------------------------------------
// SshKey (internal/sshkey/resource.go, plugin framework: public_key RequiresReplace)

function sshKeyOutputs(k: SshKeyRecord): Props {
    return { name: k.name, publicKey: k.public_key, fingerprint: k.fingerprint, labels: k.labels };
}

const sshKey: ResourceType = {
    check(ctx, olds, news, seed) {
        const failures: CheckFailure[] = [];
        const labels = labelProblem(news.labels);
        if (labels) failures.push(resourceFailure(`Invalid label. ${labels.text}`, ctx.name, `labels.${labels.key}`));
        // A plugin-framework resource: the bridge reuses the prior auto-name (ComputeAutoNameDefault).
        const { name } = nameFor(ctx, olds, news, seed);
        return { inputs: { ...news, name }, failures };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const acc: Record<string, DiffKind> = {};
        // terraform-provider-hcloud v1.66.1 internal/sshkey/resource.go: public_key RequiresReplace.
        compare(acc, "publicKey", olds.publicKey, news.publicKey, true);
        compare(acc, "name", olds.name, news.name);
        compareLabels(acc, olds.labels, news.labels ?? {});
        return diffOf(acc);
    },

    async create(_ctx, news, preview) {
        if (preview) return { id: "", outs: { name: news.name, publicKey: news.publicKey, labels: news.labels ?? {}, fingerprint: UNKNOWN } };
        const publicKey = String(news.publicKey);
        const parsed = parsePublicKey(publicKey);
        if (!parsed) throw frameworkInvalidField("invalid input in field 'public_key'", "public_key", ["invalid public key"]);
        const fingerprint = fingerprintMd5(parsed.blob);
        const name = String(news.name);
        const record = await project.update((p) => {
            // Hetzner allows one key per fingerprint in a project.
            if (Object.values(p.ssh_keys).some((k) => k.fingerprint === fingerprint)) throw frameworkError("SSH key not unique", "uniqueness_error", 409);
            if (nameTaken(p.ssh_keys, name)) throw frameworkError("SSH key name is already used", "uniqueness_error", 409);
            const k: SshKeyRecord = { id: p.next_id++, name, fingerprint, public_key: publicKey, labels: labelsOf(news.labels), created: now() };
            p.ssh_keys[k.id] = k;
            return k;
        });
        return { id: String(record.id), outs: sshKeyOutputs(record) };
    },

    async read(_ctx, id, _state, inputs) {
        const k = project.read().ssh_keys[id];
        return k ? { id, props: sshKeyOutputs(k), inputs } : undefined;
    },

    async update(_ctx, id, olds, news, _oldInputs, preview) {
        if (preview) return { ...olds, name: news.name, labels: news.labels ?? {} };
        const k = await project.update((p) => {
            const k = p.ssh_keys[id];
            if (!k) throw frameworkError(`SSH key with ID '${id}' not found`, "not_found", 404);
            const name = String(news.name);
            if (name !== k.name && nameTaken(p.ssh_keys, name, k.id)) throw frameworkError("SSH key name is already used", "uniqueness_error", 409);
            k.name = name;
            k.labels = labelsOf(news.labels);
            return k;
        });
        return sshKeyOutputs(k);
    },

    // A key that is already gone is not an error (APIErrorIsNotFound). Servers keep what they got.
    async delete(_ctx, id) {
        await project.update((p) => {
            delete p.ssh_keys[id];
        });
    },
};

// ---------------------------------------------------------------------------------------------
// Server (internal/server/resource.go, SDKv2)

/**
 * Schema defaults (`Default: false`; hetznercloud/terraform-provider-hcloud v1.66.1
 * internal/server/resource.go); the bridge writes them into the checked inputs.
 */
const SERVER_DEFAULTS: Record<string, boolean> = {
    keepDisk: false,
    backups: false,
    ignoreRemoteFirewallIds: false,
    deleteProtection: false,
    rebuildProtection: false,
    shutdownBeforeDeletion: false,
};
/**
 * ForceNew: a change replaces the server (terraform-provider-hcloud v1.66.1
 * internal/server/resource.go; pulumi/pulumi-hcloud c3608de6 schema.json `willReplaceOnChanges`).
 */
const SERVER_FORCE_NEW = ["image", "location", "datacenter", "userData", "sshKeys"];
/** Optional+Computed in internal/server/resource.go (v1.66.1): when the program leaves them out, the state's value stands. */
const SERVER_COMPUTED_INPUTS = ["image", "location", "datacenter", "firewallIds"];

/**
 * The host key a new server's stock image presents, from its user data, as cloud-init's ssh module
 * makes it (canonical/cloud-init cloudinit/config/cc_ssh.py, handle(): `ssh_deletekeys`, default true,
 * removes the image's keys; with `ssh_keys`, exactly the keys given are written and none generated).
 * Only ed25519 is modelled (the stack gives only that); undefined: the machine makes its own key.
 */
export function cloudInitHostKey(userData: unknown): string | undefined {
    if (typeof userData !== "string" || !userData.startsWith("#cloud-config")) return undefined;
    const config = parseYaml(userData) as { ssh_keys?: { ed25519_private?: unknown } } | null;
    const key = config?.ssh_keys?.ed25519_private;
    return typeof key === "string" ? key : undefined;
}

/** The user_data StateFunc: base64 of its SHA-1. */
function userDataHash(userData: string): string {
    return createHash("sha1").update(userData).digest("base64");
}

function publicNetsOf(v: unknown): { ipv4Enabled: boolean; ipv6Enabled: boolean; ipv4?: number; ipv6?: number }[] {
    return (arr(v) ?? []).map((e) => {
        const n = obj(e) ?? {};
        return { ipv4Enabled: bool(n.ipv4Enabled) ?? true, ipv6Enabled: bool(n.ipv6Enabled) ?? true, ipv4: num(n.ipv4), ipv6: num(n.ipv6) };
    });
}

/** hcloud-go deprecationutil.ServerTypeMessage, for one location. */
function deprecationMessage(t: CatalogServerType, location: string): { message: string; unavailable: boolean } | undefined {
    const after = (d: Deprecation) => new Date(d.unavailable_after);
    if (t.deprecation) {
        if (Date.now() > after(t.deprecation).getTime()) {
            return { message: `Server Type "${t.name}" is unavailable in all locations and can no longer be ordered`, unavailable: true };
        }
        const date = t.deprecation.unavailable_after.slice(0, 10);
        return { message: `Server Type "${t.name}" is deprecated in all locations and will no longer be available for order as of ${date}`, unavailable: false };
    }
    const here = t.locations.find((l) => l.name === location);
    if (!here?.deprecation) return undefined;
    if (Date.now() > after(here.deprecation).getTime()) {
        return { message: `Server Type "${t.name}" is unavailable in "${location}" and can no longer be ordered`, unavailable: true };
    }
    return {
        message: `Server Type "${t.name}" is deprecated in "${location}" and will no longer be available for order as of ${here.deprecation.unavailable_after.slice(0, 10)}`,
        unavailable: false,
    };
}

const CHANGE_DEPRECATED_SERVER_TYPE =
    "Existing servers of that plan will continue to work as before and no action is required on your part. " +
    'It is possible to migrate this Server to another Server Type by using the "hcloud server change-type" command.';

/** The attributes Hetzner reports for a server, as the resource and the list data source both read them. */
function serverAttributes(s: ServerRecord): Props {
    return {
        name: s.name,
        serverType: s.server_type,
        location: s.location,
        datacenter: s.datacenter,
        image: s.image,
        status: s.status,
        ipv4Address: s.public_net.ipv4,
        ipv6Address: s.public_net.ipv6,
        ipv6Network: s.public_net.ipv6_network,
        // getServerAttributes: backups = (backup_window != ""); Hetzner picks the window when backups
        // are enabled without one (setBackups passes ""), e.g. "22-02" as its API documentation shows.
        backupWindow: s.backups ? "22-02" : "",
        backups: s.backups,
        labels: s.labels,
        deleteProtection: s.protection.delete,
        rebuildProtection: s.protection.rebuild,
        firewallIds: s.firewall_ids,
        primaryDiskSize: s.primary_disk_size,
    };
}

/** getServerAttributes plus what the state keeps from the configuration. */
function serverOutputs(s: ServerRecord, inputs: Props): Props {
    const out: Props = {
        ...serverAttributes(s),
        keepDisk: inputs.keepDisk ?? false,
        ignoreRemoteFirewallIds: inputs.ignoreRemoteFirewallIds ?? false,
        shutdownBeforeDeletion: inputs.shutdownBeforeDeletion ?? false,
    };
    if (inputs.sshKeys !== undefined) out.sshKeys = inputs.sshKeys;
    if (typeof inputs.userData === "string") out.userData = userDataHash(inputs.userData);
    if (inputs.publicNets !== undefined) {
        out.publicNets = publicNetsOf(inputs.publicNets).map((n) => ({
            ipv4Enabled: n.ipv4Enabled,
            ipv6Enabled: n.ipv6Enabled,
            ipv4: n.ipv4Enabled ? s.public_net.ipv4_id : 0,
            ipv6: n.ipv6Enabled ? s.public_net.ipv6_id : 0,
        }));
    }
    for (const k of ["iso", "rescue", "placementGroupId", "allowDeprecatedImages"]) if (inputs[k] !== undefined) out[k] = inputs[k];
    return out;
}

/** What an update's plan looks like: the prior state with the configuration's values. */
function plannedServer(olds: Props, news: Props): Props {
    const planned: Props = { ...olds };
    for (const [k, v] of Object.entries(news)) {
        if (k.startsWith("__")) continue;
        if (k === "userData" && typeof v === "string") planned.userData = userDataHash(v);
        else planned[k] = v;
    }
    return planned;
}

const server: ResourceType = {
    check(ctx, olds, news, seed) {
        const failures: CheckFailure[] = [];
        const inputs: Props = { ...news };
        const defaults: string[] = [];
        const { name, defaulted } = nameFor(ctx, olds, news, seed);
        inputs.name = name;
        if (defaulted) defaults.push("name");
        for (const [k, v] of Object.entries(SERVER_DEFAULTS)) {
            if (inputs[k] === undefined) {
                inputs[k] = v;
                defaults.push(k);
            }
        }
        if (Array.isArray(news.publicNets)) {
            inputs.publicNets = news.publicNets.map((e) => ({ ipv4Enabled: true, ipv6Enabled: true, ...(obj(e) ?? {}) }));
        }
        inputs.__defaults = defaults;
        const labels = labelProblem(news.labels);
        if (labels) failures.push(resourceFailure(labels.text, ctx.name, "labels"));
        if (news.image === "") {
            failures.push(resourceFailure('"image" must have more than 0 characters. Have you set the name instead of an ID?', ctx.name, "image"));
        }
        (arr(news.sshKeys) ?? []).forEach((k, i) => {
            if (k === "") failures.push(resourceFailure("Invalid ssh key passed. You need to pass a string with at least 1 character", ctx.name, `sshKeys[${i}]`));
        });
        return { inputs, failures };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const acc: Record<string, DiffKind> = {};
        compare(acc, "name", olds.name, news.name);
        compare(acc, "serverType", olds.serverType, news.serverType);
        for (const k of SERVER_FORCE_NEW) {
            if (SERVER_COMPUTED_INPUTS.includes(k) && news[k] === undefined) continue;
            if (k === "userData") {
                const next = typeof news.userData === "string" ? userDataHash(news.userData) : news.userData;
                if (!(typeof news.userData === "string" && typeof olds.userData === "string" && news.userData.trim() === olds.userData.trim())) {
                    compare(acc, k, olds.userData, next, true);
                }
                continue;
            }
            if (k === "sshKeys") {
                const o = arr(olds.sshKeys) ?? [];
                const n = news.sshKeys === undefined ? [] : news.sshKeys;
                if (isUnknown(n) || containsUnknown(n) || !deepEqual(o, n)) acc.sshKeys = o.length === 0 ? "add-replace" : "update-replace";
                continue;
            }
            compare(acc, k, olds[k], news[k], true);
        }
        if (news.firewallIds !== undefined && !(news.ignoreRemoteFirewallIds === true && olds.firewallIds !== undefined)) {
            const sort = (v: unknown) => (Array.isArray(v) ? [...v].sort() : v);
            compare(acc, "firewallIds", sort(olds.firewallIds), sort(news.firewallIds));
        }
        if (news.publicNets !== undefined) {
            const strip = (v: unknown) => (containsUnknown(v) ? UNKNOWN : publicNetsOf(v).map((n) => ({ ipv4Enabled: n.ipv4Enabled, ipv6Enabled: n.ipv6Enabled })));
            compare(acc, "publicNets", strip(olds.publicNets), strip(news.publicNets));
        }
        compareLabels(acc, olds.labels, news.labels ?? {});
        for (const k of Object.keys(SERVER_DEFAULTS)) compare(acc, k, olds[k] ?? SERVER_DEFAULTS[k], news[k] ?? SERVER_DEFAULTS[k]);
        for (const k of ["iso", "rescue", "placementGroupId", "allowDeprecatedImages"]) compare(acc, k, olds[k], news[k]);
        return diffOf(acc);
    },

    async create(ctx, news, preview) {
        if (preview) {
            const planned = plannedServer({}, news);
            const computed = ["ipv4Address", "ipv6Address", "ipv6Network", "status", "primaryDiskSize", "backupWindow", "datacenter"];
            for (const k of computed) planned[k] = UNKNOWN;
            for (const k of SERVER_COMPUTED_INPUTS) if (planned[k] === undefined) planned[k] = UNKNOWN;
            if (Array.isArray(news.publicNets)) planned.publicNets = news.publicNets.map((n) => ({ ...(obj(n) ?? {}), ipv4: UNKNOWN, ipv6: UNKNOWN }));
            return { id: "", outs: planned };
        }
        const c = catalog();
        const typeName = String(news.serverType);
        // resourceServerCreate, in its order: the server type, the image for its architecture, the
        // type's deprecation at the location, the SSH keys, then the API's own refusals.
        const type = c.server_types.find((t) => t.name === typeName);
        if (!type) throw sdkError(`server type ${typeName} not found`);
        const imageName = str(news.image) ?? "";
        const image = c.images.find((i) => i.name === imageName && i.architectures.includes(type.architecture));
        if (!image) throw sdkError(`image ${imageName} for architecture ${type.architecture} not found`);
        let locationName = str(news.location);
        if (locationName === undefined && str(news.datacenter) !== undefined) {
            const parts = String(news.datacenter).split("-");
            if (parts.length < 2) throw sdkError(`Datacenter name is not valid, expected format $LOCATION-$DATACENTER, but got: ${news.datacenter}`);
            locationName = parts[0];
        }
        const deprecation = deprecationMessage(type, locationName ?? "");
        if (deprecation?.unavailable) throw sdkError(`${deprecation.message}: ${CHANGE_DEPRECATED_SERVER_TYPE}`);
        if (deprecation) await ctx.log("warning", `${deprecation.message}: ${CHANGE_DEPRECATED_SERVER_TYPE}`, { urn: ctx.urn });
        // Without a location Hetzner picks one where the type is offered.
        locationName ??= type.locations.find((l) => l.available)?.name ?? c.locations[0].name;
        const location = locationOf(c, locationName);
        if (!location) throw sdkInvalidInput(`location '${locationName}' not found`);
        const offered = type.locations.find((l) => l.name === locationName);
        if (!offered) throw sdkInvalidInput("unsupported location for server type");
        if (!offered.available) throw sdkError(apiError("error during placement", "resource_unavailable"));

        const name = String(news.name);
        const firewallIds = (arr(news.firewallIds) ?? []).map(Number);
        // Reserve the server (its id, its name) before its machine starts, which takes seconds.
        const reserved = await project.update((p) => {
            const keys: SshKeyRecord[] = [];
            for (const ref of arr(news.sshKeys) ?? []) {
                const key = p.ssh_keys[String(ref)] ?? Object.values(p.ssh_keys).find((k) => k.name === String(ref));
                if (!key) throw sdkError(`SSH key not found: ${String(ref)}`);
                keys.push(key);
            }
            if (nameTaken(p.servers, name)) throw sdkError(apiError("server name is already used", "uniqueness_error"));
            for (const id of firewallIds) if (!p.firewalls[id]) throw sdkError(apiError(`firewall with ID '${id}' not found`, "not_found"));
            const id = p.next_id++;
            const record: ServerRecord = {
                id,
                name,
                status: "initializing",
                server_type: type.name,
                location: location.name,
                datacenter: location.datacenter.name,
                image: imageName,
                labels: labelsOf(news.labels),
                ssh_keys: keys.map((k) => k.id),
                firewall_ids: [],
                primary_disk_size: type.disk,
                backups: bool(news.backups) ?? false,
                protection: { delete: bool(news.deleteProtection) ?? false, rebuild: bool(news.rebuildProtection) ?? false },
                public_net: { ipv4: "", ipv4_id: p.next_id++, ipv6: "", ipv6_id: p.next_id++, ipv6_network: "" },
                created: now(),
                target: { dir: path.join(cloudDir(), "servers", String(id)), netns: "", host_key: "" },
            };
            p.servers[id] = record;
            return { record, keys: keys.map((k) => k.public_key) };
        });
        let machine: TargetInfo;
        try {
            machine = await startTarget(reserved.record.target.dir, reserved.keys, cloudInitHostKey(news.userData));
        } catch (e) {
            await project.update((p) => {
                delete p.servers[reserved.record.id];
            });
            throw e;
        }
        const nets = publicNetsOf(news.publicNets);
        const v4 = nets.length === 0 || nets[0].ipv4Enabled;
        const v6 = nets.length === 0 || nets[0].ipv6Enabled;
        const record = await project.update((p) => {
            const s = p.servers[reserved.record.id];
            s.status = "running";
            s.public_net.ipv4 = v4 ? machine.ipv4 : "";
            s.public_net.ipv6 = v6 ? machine.ipv6 : "";
            s.public_net.ipv6_network = v6 && machine.ipv6 ? `${machine.ipv6.replace(/::\d+$/, "::")}/64` : "";
            s.target = { dir: machine.dir, netns: machine.netns, host_key: machine.hostKey };
            for (const id of firewallIds) {
                const f = p.firewalls[id];
                if (!f) continue;
                f.applied_to.push({ type: "server", server: { id: s.id } });
                s.firewall_ids.push(id);
            }
            return s;
        });
        return { id: String(record.id), outs: serverOutputs(record, news) };
    },

    // resourceServerRead: the API's view; what only the configuration knows stays as the state has it.
    async read(_ctx, id, state, inputs) {
        const s = project.read().servers[id];
        if (!s) return undefined;
        const props = serverOutputs(s, { ...inputs, userData: undefined });
        if (state.userData !== undefined) props.userData = state.userData;
        return { id, props, inputs };
    },

    async update(ctx, id, olds, news, _oldInputs, preview) {
        if (preview) return plannedServer(olds, news);
        const c = catalog();
        const partial = (message: string): InitError => new InitError(message, id, olds, [`updating ${ctx.urn}: ${message}`]);
        const current = project.read().servers[id];
        if (!current) {
            throw new Error(
                `Resource provider reported that the resource did not exist while updating ${ctx.urn}.\n\n` +
                    "This is usually a result of the resource having been deleted outside of Pulumi, and can often be " +
                    "fixed by running `pulumi refresh` before updating.",
            );
        }
        // resourceServerUpdate, in its order.
        if (news.name !== olds.name) {
            await project.update((p) => {
                if (nameTaken(p.servers, String(news.name), current.id)) throw partial(multiError([apiError("server name is already used", "uniqueness_error")]));
                p.servers[id].name = String(news.name);
            });
        }
        if (!deepEqual(olds.labels ?? {}, news.labels ?? {})) {
            await project.update((p) => {
                p.servers[id].labels = labelsOf(news.labels);
            });
        }
        if (news.serverType !== olds.serverType) {
            const target = c.server_types.find((t) => t.name === news.serverType);
            const from = c.server_types.find((t) => t.name === current.server_type);
            // Power off first (when running), then change_type.
            if (current.status === "running") {
                await project.update((p) => {
                    p.servers[id].status = "off";
                });
                powerOff(current.target.netns);
            }
            const upgradeDisk = !(bool(news.keepDisk) ?? false);
            let refusal: string | undefined;
            if (!target) refusal = apiError("server type not found", "not_found");
            else if (from && target.architecture !== from.architecture) refusal = apiError("server type has incompatible architecture", "invalid_server_type");
            else if (!target.locations.some((l) => l.name === current.location)) refusal = apiError("unsupported location for server type", "invalid_input");
            else if (target.disk < current.primary_disk_size) {
                refusal = apiError("cannot change type because the selected server_type has not sufficient disk space", "invalid_server_type");
            }
            // The server stays off: nothing powers it back on after a failed change.
            if (refusal) throw partial(multiError([refusal]));
            // change_type copies the disk and starts the server again.
            await project.update((p) => {
                const s = p.servers[id];
                s.server_type = target!.name;
                if (upgradeDisk) s.primary_disk_size = target!.disk;
                s.status = "running";
            });
            powerOn(current.target.dir, current.target.netns, current.public_net.ipv6);
        }
        const protection = { delete: bool(news.deleteProtection) ?? false, rebuild: bool(news.rebuildProtection) ?? false };
        const firewallIds = news.firewallIds === undefined ? undefined : (arr(news.firewallIds) ?? []).map(Number);
        const record = await project.update((p) => {
            const s = p.servers[id];
            // d.HasChange("backups"): setBackups enables or disables them in place, after the type change.
            s.backups = bool(news.backups) ?? false;
            s.protection = protection;
            if (firewallIds !== undefined && !(news.ignoreRemoteFirewallIds === true)) {
                for (const fid of s.firewall_ids.filter((f) => !firewallIds.includes(f))) {
                    const f = p.firewalls[fid];
                    if (f) f.applied_to = f.applied_to.filter((a) => a.server.id !== s.id);
                }
                for (const fid of firewallIds.filter((f) => !s.firewall_ids.includes(f))) {
                    const f = p.firewalls[fid];
                    if (!f) throw partial(multiError([apiError(`firewall with ID '${fid}' not found`, "not_found")]));
                    f.applied_to.push({ type: "server", server: { id: s.id } });
                }
                s.firewall_ids = [...firewallIds];
            }
            return s;
        });
        return serverOutputs(record, news);
    },

    async delete(_ctx, id) {
        const s = project.read().servers[id];
        if (!s) throw new Error(multiError([apiError(`server with ID '${id}' not found`, "not_found")]));
        if (s.protection.delete) throw new Error(multiError([apiError("server deletion is protected", "protected")]));
        stopTarget(s.target.dir);
        await project.update((p) => {
            for (const f of Object.values(p.firewalls)) f.applied_to = f.applied_to.filter((a) => a.server.id !== s.id);
            // Its volumes are detached (their mounts went with the target's namespace).
            detachVolumesOf(p, s.id);
            delete p.servers[id];
        });
    },
};

// ---------------------------------------------------------------------------------------------
// Invokes (plugin-framework data sources, except getServers and getDatacenter(s): SDKv2)

function deprecationFields(d: Deprecation | null): Props {
    return d
        ? { isDeprecated: true, deprecationAnnounced: d.announced, unavailableAfter: d.unavailable_after }
        : { isDeprecated: false, deprecationAnnounced: "", unavailableAfter: "" };
}

function serverTypeResult(c: Catalog, t: CatalogServerType): Props {
    return {
        id: t.id,
        name: t.name,
        description: t.description,
        category: t.category,
        cores: t.cores,
        memory: t.memory,
        disk: t.disk,
        storageType: t.storage_type,
        cpuType: t.cpu_type,
        architecture: t.architecture,
        includedTraffic: 0,
        locations: t.locations.map((l) => ({
            id: locationOf(c, l.name)?.id ?? 0,
            name: l.name,
            available: l.available,
            recommended: l.recommended,
            ...deprecationFields(l.deprecation),
        })),
        ...deprecationFields(t.deprecation),
    };
}

function locationResult(l: CatalogLocation): Props {
    return {
        id: l.id,
        name: l.name,
        description: l.description,
        country: l.country,
        city: l.city,
        latitude: l.latitude,
        longitude: l.longitude,
        networkZone: l.network_zone,
    };
}

function datacenterResult(c: Catalog, l: CatalogLocation): Props {
    const types = c.server_types.filter((t) => t.locations.some((o) => o.name === l.name));
    return {
        id: l.datacenter.id,
        name: l.datacenter.name,
        description: l.datacenter.description,
        location: {
            id: String(l.id),
            name: l.name,
            description: l.description,
            country: l.country,
            city: l.city,
            latitude: String(l.latitude),
            longitude: String(l.longitude),
            network_zone: l.network_zone,
        },
        supportedServerTypeIds: types.map((t) => t.id),
        availableServerTypeIds: types.filter((t) => t.locations.some((o) => o.name === l.name && o.available)).map((t) => t.id),
    };
}

function serverListItem(s: ServerRecord): Props {
    return {
        id: s.id,
        ...serverAttributes(s),
        placementGroupId: 0,
        iso: "",
        rescue: "",
        networks: [],
    };
}

const functions: Record<string, Invoke> = {
    "hcloud:index/getServerType:getServerType": (args) => {
        const failures = exactlyOne(args);
        if (failures) return { failures };
        const c = catalog();
        const t = args.id !== undefined ? c.server_types.find((x) => x.id === num(args.id)) : c.server_types.find((x) => x.name === str(args.name));
        if (!t) throw args.id !== undefined ? notFound("server type", "id", args.id) : notFound("server type", "name", args.name);
        return serverTypeResult(c, t);
    },
    "hcloud:index/getServerTypes:getServerTypes": () => {
        const c = catalog();
        const ids = c.server_types.map((t) => String(t.id));
        return {
            id: listId(ids),
            serverTypeIds: ids,
            names: c.server_types.map((t) => t.name),
            descriptions: c.server_types.map((t) => t.description),
            serverTypes: c.server_types.map((t) => serverTypeResult(c, t)),
        };
    },
    "hcloud:index/getLocation:getLocation": (args) => {
        const failures = exactlyOne(args);
        if (failures) return { failures };
        const c = catalog();
        const l = args.id !== undefined ? c.locations.find((x) => x.id === num(args.id)) : locationOf(c, str(args.name) ?? "");
        if (!l) throw args.id !== undefined ? notFound("location", "id", args.id) : notFound("location", "name", args.name);
        return locationResult(l);
    },
    "hcloud:index/getLocations:getLocations": () => {
        const c = catalog();
        const ids = c.locations.map((l) => String(l.id));
        return {
            id: listId(ids),
            locationIds: ids,
            names: c.locations.map((l) => l.name),
            descriptions: c.locations.map((l) => l.description),
            locations: c.locations.map(locationResult),
        };
    },
    "hcloud:index/getDatacenter:getDatacenter": (args) => {
        const c = catalog();
        const l = c.locations.find((x) => (args.id !== undefined ? x.datacenter.id === num(args.id) : x.datacenter.name === str(args.name)));
        if (!l) throw new Error(multiError([`datacenter not found: ${args.id ?? args.name}`]));
        return datacenterResult(c, l);
    },
    "hcloud:index/getDatacenters:getDatacenters": () => {
        const c = catalog();
        const dcs = [...c.locations].sort((a, b) => a.datacenter.id - b.datacenter.id);
        const ids = dcs.map((l) => String(l.datacenter.id));
        return {
            id: listId(ids),
            datacenterIds: ids,
            names: dcs.map((l) => l.datacenter.name),
            descriptions: dcs.map((l) => l.datacenter.description),
            datacenters: dcs.map((l) => datacenterResult(c, l)),
        };
    },
    "hcloud:index/getServers:getServers": (args) => {
        const selector = str(args.withSelector) ?? "";
        const statuses = (arr(args.withStatuses) ?? []).map(String);
        const servers = Object.values(project.read().servers)
            .filter((s) => selects(selector, s.labels) && (statuses.length === 0 || statuses.includes(s.status)))
            .sort((a, b) => a.id - b.id);
        const result: Props = { id: listId(servers.map((s) => String(s.id))), servers: servers.map(serverListItem) };
        if (args.withSelector !== undefined) result.withSelector = args.withSelector;
        if (args.withStatuses !== undefined) result.withStatuses = args.withStatuses;
        return result;
    },
};

// ---------------------------------------------------------------------------------------------
// Configuration (hcloud/provider.go: `token` must be exactly 64 characters, from the
// configuration or HCLOUD_TOKEN; plugin_provider.go: no token at all fails Configure)

function tokenOf(config: Props): string | undefined {
    return str(config.token) ?? (process.env.HCLOUD_TOKEN || undefined);
}

serve(
    {
        name: "hcloud",
        version: pinnedVersion("hcloud"),
        secretConfig: ["token"],
        checkConfig(config, urn) {
            if (isUnknown(config.token)) return [];
            const token = tokenOf(config);
            if (token !== undefined && token.length !== 64) {
                return [configFailure("hcloud", urn, "entered token is invalid (must be exactly 64 characters long)", "token")];
            }
            return [];
        },
        configure(config) {
            if (!tokenOf(config)) {
                throw new Error(
                    "Missing Hetzner Cloud API token: While configuring the provider, the Hetzner Cloud API token was not found " +
                        "in the HCLOUD_TOKEN environment variable or provider configuration block token attribute.",
                );
            }
        },
        resources: {
            "hcloud:index/server:Server": server,
            "hcloud:index/sshKey:SshKey": sshKey,
            "hcloud:index/firewall:Firewall": firewall,
            ...dnsResources,
            ...volumeResources,
            ...storageBoxResources,
        },
        functions: { ...functions, ...dnsFunctions, ...volumeFunctions, ...storageBoxFunctions },
    },
    process.argv.slice(2),
);
