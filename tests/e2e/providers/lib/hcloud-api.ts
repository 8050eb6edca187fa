// The fake Hetzner Cloud project shared by the stand-in hcloud provider's resources (hcloud.ts,
// hcloud-dns.ts, hcloud-volumes.ts): the catalog, the records in $BLOG_E2E_CLOUD_DIR/hcloud.json,
// how API errors read, and the input rules every resource shares. Sources: see hcloud.ts.
import { createHash, randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { autoName, multiError } from "./bridge";
import { CheckFailure, Ctx, DiffResult } from "./host";
import { repoRoot } from "./repo";
import { Store } from "./store";
import { DiffKind, Props, deepEqual, isUnknown, obj, objectDiff } from "./values";

// ---------------------------------------------------------------------------------------------
// The catalog (tests/e2e/providers/hcloud-catalog.json, or $BLOG_E2E_HCLOUD_CATALOG)

export interface Deprecation {
    announced: string;
    unavailable_after: string;
}
export interface CatalogLocation {
    id: number;
    name: string;
    description: string;
    country: string;
    city: string;
    latitude: number;
    longitude: number;
    network_zone: string;
    datacenter: { id: number; name: string; description: string };
}
export interface CatalogServerType {
    id: number;
    name: string;
    description: string;
    category: string;
    cores: number;
    memory: number;
    disk: number;
    storage_type: string;
    cpu_type: string;
    architecture: string;
    deprecation: Deprecation | null;
    locations: { name: string; available: boolean; recommended: boolean; deprecation: Deprecation | null }[];
}
export interface Catalog {
    locations: CatalogLocation[];
    server_types: CatalogServerType[];
    images: { name: string; architectures: string[] }[];
}

export function catalog(): Catalog {
    const file = process.env.BLOG_E2E_HCLOUD_CATALOG || path.join(repoRoot(), "tests/e2e/providers/hcloud-catalog.json");
    return JSON.parse(fs.readFileSync(file, "utf8")) as Catalog;
}

// ---------------------------------------------------------------------------------------------
// The fake project: $BLOG_E2E_CLOUD_DIR/hcloud.json

export interface SshKeyRecord {
    id: number;
    name: string;
    fingerprint: string;
    public_key: string;
    labels: Record<string, string>;
    created: string;
}
export interface FirewallRuleRecord {
    direction: string;
    protocol: string;
    port?: string;
    source_ips: string[];
    destination_ips: string[];
    description?: string;
}
export interface FirewallRecord {
    id: number;
    name: string;
    labels: Record<string, string>;
    rules: FirewallRuleRecord[];
    applied_to: { type: "server"; server: { id: number } }[];
    created: string;
}
export interface ServerRecord {
    id: number;
    name: string;
    /** "initializing" while its machine starts, then "running" or "off". */
    status: string;
    server_type: string;
    location: string;
    datacenter: string;
    image: string;
    labels: Record<string, string>;
    /** Ids of the SSH keys whose public keys went into root's authorized_keys. */
    ssh_keys: number[];
    firewall_ids: number[];
    primary_disk_size: number;
    backups: boolean;
    protection: { delete: boolean; rebuild: boolean };
    public_net: { ipv4: string; ipv4_id: number; ipv6: string; ipv6_id: number; ipv6_network: string };
    created: string;
    /** The SSH target playing this server (tests/integration/harness/target.sh). */
    target: { dir: string; netns: string; host_key: string };
}
/** A DNS zone (the Cloud API's Zones, hcloud-go v2.44.0 hcloud/zone.go). */
export interface ZoneRecord {
    id: number;
    /** Lower case, without the trailing dot. */
    name: string;
    /** "primary" or "secondary". */
    mode: string;
    /** The zone's default TTL. */
    ttl: number;
    labels: Record<string, string>;
    protection: { delete: boolean };
    primary_nameservers: { address: string; port: number; tsig_algorithm?: string; tsig_key?: string }[];
    authoritative_nameservers: { assigned: string[] };
    /** "hetzner", "other" or "unknown". */
    registrar: string;
    status: string;
    created: string;
    /** The serial the zone's SOA record carries; the API counts it up on every change. */
    serial: number;
    /** Seeded from $BLOG_E2E_HETZNER_ZONES rather than created through the provider. */
    seeded?: boolean;
}
/** An RRSet (hcloud-go hcloud/zone_rrset.go): every record of one name and type in a zone. */
export interface RRSetRecord {
    /** "<name>/<type>", as the API forms it. */
    id: string;
    /** The zone's id. */
    zone: number;
    /** Relative to the zone, lower case, "@" for the apex. */
    name: string;
    type: string;
    /** Null: the zone's default TTL applies. */
    ttl: number | null;
    labels: Record<string, string>;
    protection: { change: boolean };
    records: { value: string; comment?: string }[];
}
/** A volume (hcloud-go hcloud/volume.go); its "disk" is the directory `dir`. */
export interface VolumeRecord {
    id: number;
    name: string;
    /** GB. */
    size: number;
    location: string;
    /** The server it is attached to, or null. */
    server: number | null;
    /** The automount flag of the last attach (or of the create), null when none was sent. */
    automount: boolean | null;
    /** "ext4" or "xfs" when the create asked for a file system, else null. */
    format: string | null;
    labels: Record<string, string>;
    protection: { delete: boolean };
    linux_device: string;
    status: string;
    created: string;
    /** $BLOG_E2E_CLOUD_DIR/volumes/<id>: its disk image, disk.img, is the volume's content. */
    dir: string;
    /** The device the volume is inside the attached server's target (linux_device), while it is attached. */
    mount: { server: number; path: string } | null;
    /**
     * Every detach from a running server, with where the volume was still mounted inside it then
     * (Hetzner detaches a mounted volume all the same: what a test checks never happens).
     */
    detaches?: Array<{ server: number; at: string; mounted: string[] }>;
}
export interface Project {
    next_id: number;
    ssh_keys: Record<string, SshKeyRecord>;
    firewalls: Record<string, FirewallRecord>;
    servers: Record<string, ServerRecord>;
    zones: Record<string, ZoneRecord>;
    /** Keyed "<zone id>/<name>/<type>". */
    rrsets: Record<string, RRSetRecord>;
    volumes: Record<string, VolumeRecord>;
    /** Names of the zones $BLOG_E2E_HETZNER_ZONES has seeded, so that a deleted one stays deleted. */
    seeded_zones?: string[];
}

/** A document written before zones, RRSets and volumes were modelled gets them, empty. */
function withDefaults(doc: Project): Project {
    doc.zones ??= {};
    doc.rrsets ??= {};
    doc.volumes ??= {};
    return doc;
}

class ProjectStore extends Store<Project> {
    override read(): Project {
        return withDefaults(super.read());
    }
    override update<R>(fn: (doc: Project) => R): Promise<R> {
        return super.update((doc) => fn(withDefaults(doc)));
    }
}

export const project = new ProjectStore("hcloud.json", () => ({
    next_id: 40_000_000 + Math.floor(Math.random() * 1_000_000),
    ssh_keys: {},
    firewalls: {},
    servers: {},
    zones: {},
    rrsets: {},
    volumes: {},
}));

export const now = () => new Date().toISOString().replace(/\.\d+Z$/, "+00:00");

// ---------------------------------------------------------------------------------------------
// Errors as the user reads them

/** hcloud-go's hcloud.Error.Error(): the API's message, code and the response's correlation id. */
export function apiError(message: string, code: string): string {
    return `${message} (${code}, ${randomBytes(16).toString("hex")})`;
}

/** An SDKv2 resource's error (hcloudutil.ErrorToDiag, one diagnostic, multierror-formatted). */
export function sdkError(text: string): Error {
    return new Error(multiError([text]));
}

/** ErrorToDiag on an invalid_input error: the fields are appended (empty when the API sends none). */
export function sdkInvalidInput(message: string, fields: string[] = []): Error {
    return sdkError(`${apiError(message, "invalid_input")}: [${fields.join(" ")}]`);
}

/** A plugin-framework resource's error (hcloudutil.APIErrorDiagnostics, then the bridge's `summary: detail`). */
export function frameworkError(message: string, code: string, status: number): Error {
    return new Error(
        `API request failed: An unexpected error was encountered during an API request.\n\n${apiError(message, code)}\n\n` +
            `Error code: ${code}\nStatus code: ${status}\n`,
    );
}

export function frameworkInvalidField(message: string, field: string, messages: string[]): Error {
    return new Error(
        "Invalid field in API request: An invalid field was encountered during an API request. " +
            `The field might not map 1:1 to your terraform resource.\n\n${apiError(message, "invalid_input")}\n\n` +
            `Field: ${field}\nMessages:\n${messages.map((m) => ` - ${m}`).join("\n")}\nError code: invalid_input\nStatus code: 400\n`,
    );
}

// ---------------------------------------------------------------------------------------------
// Shared input rules

/** hcloud-go labels.go ValidateResourceLabels. */
export const LABEL_KEY = /^([a-z0-9A-Z]((?:[\-_.]|[a-z0-9A-Z]){0,253}[a-z0-9A-Z])?\/)?[a-z0-9A-Z]((?:[\-_.]|[a-z0-9A-Z]|){0,61}[a-z0-9A-Z])?$/;
export const LABEL_VALUE = /^(([a-z0-9A-Z](?:[\-_.]|[a-z0-9A-Z]){0,61})?[a-z0-9A-Z]$|$)/;

export function labelProblem(labels: unknown): { key: string; text: string } | undefined {
    const map = obj(labels);
    if (!map) return undefined;
    for (const [k, v] of Object.entries(map)) {
        if (isUnknown(v)) continue;
        if (!LABEL_KEY.test(k)) return { key: k, text: `label key '${k}' is not correctly formatted` };
        if (!LABEL_VALUE.test(String(v))) return { key: k, text: `label value '${String(v)}' (key: ${k}) is not correctly formatted` };
    }
    return undefined;
}

export function labelsOf(v: unknown): Record<string, string> {
    return Object.fromEntries(Object.entries(obj(v) ?? {}).map(([k, e]) => [k, String(e)]));
}

/** The name the bridge gives: the program's, the prior auto-name on an update, or a new auto-name. */
export function nameFor(ctx: Ctx, olds: Props, news: Props, seed: Buffer): { name: unknown; defaulted: boolean } {
    if (news.name !== undefined && news.name !== null) return { name: news.name, defaulted: false };
    if (typeof olds.name === "string") return { name: olds.name, defaulted: true };
    return { name: autoName(ctx.name, seed), defaulted: true };
}

/** Whether another resource of the project already has this name (Hetzner names are unique per project). */
export function nameTaken<T extends { id: number; name: string }>(records: Record<string, T>, name: string, except?: number): boolean {
    return Object.values(records).some((r) => r.name === name && r.id !== except);
}

export function diffOf(detailedDiff: Record<string, DiffKind>): DiffResult {
    return { changes: Object.keys(detailedDiff).length > 0, detailedDiff };
}

/** A changed (or unknown) planned value; `replace` for ForceNew/RequiresReplace attributes. */
export function compare(acc: Record<string, DiffKind>, key: string, oldValue: unknown, newValue: unknown, replace = false): void {
    const old = oldValue === undefined ? null : oldValue;
    const next = newValue === undefined ? null : newValue;
    if (!isUnknown(next) && deepEqual(old, next)) return;
    const kind: DiffKind = old === null ? "add" : next === null ? "delete" : "update";
    acc[key] = replace ? (`${kind}-replace` as DiffKind) : kind;
}

export function compareLabels(acc: Record<string, DiffKind>, oldValue: unknown, newValue: unknown): void {
    if (isUnknown(newValue)) {
        acc.labels = "update";
        return;
    }
    Object.assign(acc, objectDiff({ labels: obj(oldValue) ?? {} }, { labels: obj(newValue) ?? {} }));
}

// ---------------------------------------------------------------------------------------------
// Lookups shared by the resources and the invokes

export function locationOf(c: Catalog, name: string): CatalogLocation | undefined {
    return c.locations.find((l) => l.name === name);
}

/** datasourceutil.ListID: the SHA-1 of the ids, concatenated. */
export function listId(ids: string[]): string {
    return createHash("sha1").update(ids.join("")).digest("hex");
}

/** "Resource not found" as NotFoundDiagnostic words it, through the bridge (`summary: detail`). */
export function notFound(what: string, key: string, value: unknown): Error {
    const shown = key === "name" ? JSON.stringify(value) : String(value);
    return new Error(`Resource not found: Resource (${what}) was not found: ${key}=${shown}`);
}

/**
 * datasourcevalidator.ExactlyOneOf (terraform-plugin-framework-validators v0.19.0
 * internal/configvalidator/exactly_one_of.go) with the description "Exactly one of these
 * attributes must be configured: [id,name]". More than one configured is an "Invalid Attribute
 * Combination" on the first of them, which the bridge returns as a check failure of that property
 * (pulumi-terraform-bridge v3.135.0 pkg/pf/tfbridge/provider_invoke.go
 * parseInvokePropertyCheckFailures: `summary: detail`); none configured is "Missing Attribute
 * Configuration" on no attribute, which the bridge returns as the invoke's error.
 */
export function exactlyOne(args: Props, keys: string[] = ["id", "name"], tfNames: string[] = keys): CheckFailure[] | undefined {
    const given = keys.filter((k) => args[k] !== undefined && args[k] !== null);
    if (given.length === 1) return undefined;
    const description = `Exactly one of these attributes must be configured: [${tfNames.join(",")}]`;
    if (given.length === 0) throw new Error(`Missing Attribute Configuration: ${description}`);
    return [{ property: given[0], reason: `Invalid Attribute Combination: ${description}` }];
}

/** A label selector (`k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated) applied to labels. */
export function selects(selector: string, labels: Record<string, string>): boolean {
    return selector
        .split(",")
        .map((t) => t.trim())
        .filter(Boolean)
        .every((term) => {
            let m: RegExpExecArray | null;
            if ((m = /^([^!=]+)!=(.*)$/.exec(term))) return labels[m[1].trim()] !== m[2].trim();
            if ((m = /^([^!=]+)==?(.*)$/.exec(term))) return labels[m[1].trim()] === m[2].trim();
            if ((m = /^!(.+)$/.exec(term))) return !(m[1].trim() in labels);
            return term in labels;
        });
}

