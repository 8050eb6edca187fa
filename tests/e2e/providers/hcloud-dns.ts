// Hetzner's DNS in the Cloud API, for the stand-in hcloud provider (hcloud.ts serves these):
// the resources `Zone` and `ZoneRrset` and the invokes getZone and getZones, over the zones and
// RRSets of $BLOG_E2E_CLOUD_DIR/hcloud.json (zones seeded from $BLOG_E2E_HETZNER_ZONES).
//
// What it models, and where that comes from:
//   hetznercloud/terraform-provider-hcloud v1.66.1 (which pulumi/pulumi-hcloud c3608de6 bridges;
//   both are plugin-framework resources, so their RequiresReplace plan modifiers reach Pulumi
//   only at Diff time and schema.json shows no willReplaceOnChanges for them):
//     internal/zone/resource.go        name, mode RequiresReplace; ttl Optional+Computed, default
//                                      3600; delete_protection, primary_nameservers Optional+Computed;
//                                      ValidateConfig (primary_nameservers forbidden in primary mode,
//                                      required in secondary mode, at least 1); computed registrar and
//                                      authoritative_nameservers.assigned; Update's order (ttl,
//                                      primary nameservers, protection, then labels); Delete ignores
//                                      not_found
//     internal/zone/model.go           the state is the API's zone
//     internal/zone/data_source.go     getZone: ExactlyOneOf(id, name, with_selector); not found by
//                                      id/name (NotFoundDiagnostic) or selector (hcloudutil.GetOne)
//     internal/zone/data_source_list.go  getZones: all zones (with_selector), id = ListID
//     internal/zonerrset/resource.go   zone ("ID or Name of the parent Zone"), name, type
//                                      RequiresReplace; ttl Optional (null: the zone's default);
//                                      change_protection Optional+Computed; records a set of
//                                      {value, comment} with SizeAtLeast(1); the id is the API's
//                                      "<name>/<type>"; type SOA is imported on create and forgotten
//                                      on delete, its serial set to 0 in the state; Update turns
//                                      protection off first and on last; Delete ignores not_found
//     internal/zonerrset/model.go      a record's comment only when not empty; ttl null when unset
//     internal/util/resourceutil/labels.go   labels default to {} and are validated per key
//   hetznercloud/hcloud-go v2.44.0 hcloud/zone.go, zone_rrset.go (the zone in the request path is
//     its id or its name; an RRSet id is "<name>/<type>"; registrar hetzner|other|unknown),
//     client.go ListOpts.Values (the query parameters a not-found names).
//   terraform-plugin-framework-validators v0.19.0 setvalidator/size_at_least.go,
//     listvalidator/size_at_least.go, internal/configvalidator/exactly_one_of.go (their texts).
//   pulumi-terraform-bridge v3.135.0 pkg/pf/tfbridge/detect_check_failures.go (a plugin-framework
//     check failure reads `summary. detail`), SetAutonaming(255, "-") (a missing `name` of a Zone
//     or ZoneRrset gets an auto-name, as every `name` does).
//   Hetzner Cloud API reference (docs.hetzner.cloud/reference/cloud): zone-rrsets "Create an
//     RRSet" (name lower case, not ending with a dot or the zone's name, "@" for the apex; the
//     type list; ttl between 60 and 2147483647, or null for the zone's default; records not empty
//     and distinct; incorrect_zone_mode when the zone is not primary), zones (a new primary zone
//     has its SOA and NS RRSets at "@"; assigned nameservers hydrogen.ns.hetzner.com.,
//     oxygen.ns.hetzner.com., helium.ns.hetzner.de.).
// Not verified against the live API (no source at hand words them): the texts of the refusals for
// an invalid record value, name or TTL (the code invalid_input and the "invalid input in field
// '<field>'" form are Hetzner's; the field messages are this stand-in's), "RRSet already exists"
// (409 uniqueness_error: hetznercloud's API answers 409 for an existing RRSet, qdm12/ddns-updater#1165),
// "zone not found" (404 not_found), the protected texts (423 protected).
import { isIPv4, isIPv6 } from "net";
import { resourceFailure } from "./lib/bridge";
import { CheckFailure, Invoke, ResourceType } from "./lib/host";
import {
    Project,
    RRSetRecord,
    ZoneRecord,
    compare,
    compareLabels,
    diffOf,
    exactlyOne,
    frameworkError,
    frameworkInvalidField,
    labelProblem,
    labelsOf,
    listId,
    nameFor,
    notFound,
    now,
    project,
    selects,
} from "./lib/hcloud-api";
import { DiffKind, Props, UNKNOWN, arr, bool, containsUnknown, deepEqual, isObject, isUnknown, num, obj, str } from "./lib/values";

/** The nameservers the API assigns to a zone. */
const ASSIGNED_NAMESERVERS = ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com.", "helium.ns.hetzner.de."];
/** hcloud-go zone_rrset.go ZoneRRSetType, the API's list. */
const RRSET_TYPES = ["A", "AAAA", "CAA", "CNAME", "DS", "HINFO", "HTTPS", "MX", "NS", "PTR", "RP", "SOA", "SRV", "SVCB", "TLSA", "TXT"];
const TTL_MIN = 60;
const TTL_MAX = 2147483647;
const ZONE_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

// ---------------------------------------------------------------------------------------------
// The zones and their RRSets in hcloud.json

const rrsetKey = (zone: number, name: string, type: string) => `${zone}/${name}/${type}`;

function soaValue(serial: number): string {
    return `${ASSIGNED_NAMESERVERS[0]} dns.hetzner.com. ${serial} 86400 10800 3600000 3600`;
}

/** Counts the zone's serial up, as the API does on every change of its records. */
function bumpSerial(p: Project, zone: ZoneRecord): void {
    zone.serial += 1;
    const soa = p.rrsets[rrsetKey(zone.id, "@", "SOA")];
    if (soa) soa.records = [{ value: soaValue(zone.serial) }];
}

interface NewZone {
    name: string;
    mode: string;
    ttl: number;
    labels: Record<string, string>;
    primaryNameservers: ZoneRecord["primary_nameservers"];
    registrar?: string;
    seeded?: boolean;
}

/** A new zone; a primary one gets its SOA and NS RRSets at the apex, as the API makes them. */
function addZone(p: Project, z: NewZone): ZoneRecord {
    const today = new Date().toISOString().slice(0, 10).replace(/-/g, "");
    const record: ZoneRecord = {
        id: p.next_id++,
        name: z.name,
        mode: z.mode,
        ttl: z.ttl,
        labels: z.labels,
        protection: { delete: false },
        primary_nameservers: z.primaryNameservers,
        authoritative_nameservers: { assigned: [...ASSIGNED_NAMESERVERS] },
        registrar: z.registrar ?? "unknown",
        status: "ok",
        created: now(),
        serial: Number(`${today}01`),
    };
    if (z.seeded) record.seeded = true;
    p.zones[record.id] = record;
    if (z.mode === "primary") {
        const base = { zone: record.id, name: "@", ttl: null, labels: {}, protection: { change: false } };
        p.rrsets[rrsetKey(record.id, "@", "SOA")] = { ...base, id: "@/SOA", type: "SOA", records: [{ value: soaValue(record.serial) }] };
        p.rrsets[rrsetKey(record.id, "@", "NS")] = { ...base, id: "@/NS", type: "NS", records: ASSIGNED_NAMESERVERS.map((value) => ({ value })) };
    }
    return record;
}

interface ZoneSeed {
    ttl?: number;
    labels?: Record<string, string>;
    mode?: string;
    registrar?: string;
}

/**
 * $BLOG_E2E_HETZNER_ZONES: a JSON list of zone names (`["example.org"]`) or an object of names
 * to their settings (`{"example.org": {"ttl": 3600, "labels": {...}, "registrar": "other"}}`).
 */
function zoneSeeds(): Record<string, ZoneSeed> {
    const raw = process.env.BLOG_E2E_HETZNER_ZONES;
    if (!raw) return {};
    const parsed = JSON.parse(raw) as unknown;
    if (Array.isArray(parsed)) return Object.fromEntries(parsed.map((n) => [String(n), {}]));
    if (isObject(parsed)) return parsed as Record<string, ZoneSeed>;
    throw new Error('BLOG_E2E_HETZNER_ZONES must be a JSON list of zone names or an object {"<name>": {...}}');
}

/** Adds the zones of $BLOG_E2E_HETZNER_ZONES that were never seeded (a deleted one stays deleted). */
export async function seedZones(): Promise<void> {
    const seeds = zoneSeeds();
    const done = project.read().seeded_zones ?? [];
    if (Object.keys(seeds).every((n) => done.includes(n))) return;
    await project.update((p) => {
        p.seeded_zones ??= [];
        for (const [name, seed] of Object.entries(seeds)) {
            if (p.seeded_zones.includes(name)) continue;
            p.seeded_zones.push(name);
            if (Object.values(p.zones).some((z) => z.name === name)) continue;
            addZone(p, {
                name,
                mode: seed.mode ?? "primary",
                ttl: seed.ttl ?? 3600,
                labels: seed.labels ?? {},
                primaryNameservers: [],
                registrar: seed.registrar,
                seeded: true,
            });
        }
    });
}

/** The zone the request path names: `/zones/{id_or_name}` (hcloud-go Zone.idOrName). */
function zoneByIdOrName(p: Project, idOrName: string): ZoneRecord | undefined {
    if (/^[0-9]+$/.test(idOrName)) return p.zones[idOrName];
    return Object.values(p.zones).find((z) => z.name === idOrName);
}

// ---------------------------------------------------------------------------------------------
// Zone (internal/zone/resource.go, plugin framework)

interface PrimaryNameserver {
    address: string;
    port: number;
    tsig_algorithm?: string;
    tsig_key?: string;
}

function primaryNameserversOf(v: unknown): PrimaryNameserver[] {
    return (arr(v) ?? []).map((e) => {
        const n = obj(e) ?? {};
        const out: PrimaryNameserver = { address: str(n.address) ?? "", port: num(n.port) ?? 53 };
        if (str(n.tsigAlgorithm)) out.tsig_algorithm = str(n.tsigAlgorithm);
        if (str(n.tsigKey)) out.tsig_key = str(n.tsigKey);
        return out;
    });
}

function primaryNameserverOutputs(list: PrimaryNameserver[]): Props[] {
    return list.map((n) => {
        const out: Props = { address: n.address, port: n.port };
        if (n.tsig_algorithm) out.tsigAlgorithm = n.tsig_algorithm;
        if (n.tsig_key) out.tsigKey = n.tsig_key;
        return out;
    });
}

/** model.FromAPI, with the bridge's names (authoritative_nameservers.assigned is `assigneds`). */
function zoneFields(z: ZoneRecord): Props {
    return {
        name: z.name,
        mode: z.mode,
        ttl: z.ttl,
        labels: z.labels,
        deleteProtection: z.protection.delete,
        primaryNameservers: primaryNameserverOutputs(z.primary_nameservers),
        authoritativeNameservers: { assigneds: z.authoritative_nameservers.assigned },
        registrar: z.registrar,
    };
}

/** A framework resource's "Invalid field in API request" for one field. */
function invalidField(field: string, messages: string[]): Error {
    return frameworkInvalidField(`invalid input in field '${field}'`, field, messages);
}

function ttlProblem(ttl: number | null): string | undefined {
    if (ttl === null) return undefined;
    if (!Number.isInteger(ttl) || ttl < TTL_MIN || ttl > TTL_MAX) return `must be in between ${TTL_MIN} and ${TTL_MAX}`;
    return undefined;
}

const zone: ResourceType = {
    check(ctx, olds, news, seed) {
        const failures: CheckFailure[] = [];
        const { name } = nameFor(ctx, olds, news, seed);
        const labels = labelProblem(news.labels);
        if (labels) failures.push(resourceFailure(`Invalid label. ${labels.text}`, ctx.name, `labels.${labels.key}`));
        const list = arr(news.primaryNameservers);
        if (list && list.length === 0) {
            failures.push(resourceFailure("Invalid Attribute Value. Attribute primary_nameservers list must contain at least 1 elements, got: 0", ctx.name, "primaryNameservers"));
        }
        // Resource.ValidateConfig.
        const given = news.primaryNameservers !== undefined && news.primaryNameservers !== null;
        if (news.mode === "primary" && given && !isUnknown(news.primaryNameservers)) {
            failures.push(resourceFailure("Forbidden attribute. This attribute is forbidden when mode is primary.", ctx.name, "primaryNameservers"));
        }
        if (news.mode === "secondary" && !given) {
            failures.push(resourceFailure("Required attribute. This attribute is required when mode is secondary.", ctx.name, "primaryNameservers"));
        }
        return { inputs: { ...news, name }, failures };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const acc: Record<string, DiffKind> = {};
        compare(acc, "name", olds.name, news.name, true);
        compare(acc, "mode", olds.mode, news.mode, true);
        compare(acc, "ttl", olds.ttl, news.ttl ?? 3600);
        compareLabels(acc, olds.labels, news.labels ?? {});
        // Optional+Computed: left out, the state's value stands.
        if (news.deleteProtection !== undefined) compare(acc, "deleteProtection", olds.deleteProtection, news.deleteProtection);
        if (news.primaryNameservers !== undefined) {
            const norm = (v: unknown) => (containsUnknown(v) ? UNKNOWN : primaryNameserverOutputs(primaryNameserversOf(v)));
            compare(acc, "primaryNameservers", norm(olds.primaryNameservers), norm(news.primaryNameservers));
        }
        return diffOf(acc);
    },

    async create(_ctx, news, preview) {
        if (preview) {
            return {
                id: "",
                outs: {
                    name: news.name,
                    mode: news.mode,
                    ttl: news.ttl ?? 3600,
                    labels: news.labels ?? {},
                    deleteProtection: news.deleteProtection ?? UNKNOWN,
                    primaryNameservers: news.primaryNameservers === undefined ? UNKNOWN : primaryNameserverOutputs(primaryNameserversOf(news.primaryNameservers)),
                    authoritativeNameservers: UNKNOWN,
                    registrar: UNKNOWN,
                },
            };
        }
        await seedZones();
        const name = String(news.name);
        const mode = String(news.mode);
        const ttl = num(news.ttl) ?? 3600;
        if (!ZONE_NAME.test(name)) throw invalidField("name", ["invalid zone name"]);
        if (!["primary", "secondary"].includes(mode)) throw invalidField("mode", ["value must be one of: primary, secondary"]);
        const ttlBad = ttlProblem(ttl);
        if (ttlBad) throw invalidField("ttl", [ttlBad]);
        const record = await project.update((p) => {
            if (Object.values(p.zones).some((z) => z.name === name)) throw frameworkError("name is already used", "uniqueness_error", 409);
            const z = addZone(p, { name, mode, ttl, labels: labelsOf(news.labels), primaryNameservers: primaryNameserversOf(news.primaryNameservers) });
            // Create: ChangeProtection when delete_protection is set (true or false).
            if (bool(news.deleteProtection) !== undefined) z.protection.delete = bool(news.deleteProtection)!;
            return z;
        });
        return { id: String(record.id), outs: zoneFields(record) };
    },

    async read(_ctx, id, _state, inputs) {
        await seedZones();
        const z = project.read().zones[id];
        return z ? { id, props: zoneFields(z), inputs } : undefined;
    },

    async update(_ctx, id, olds, news, _oldInputs, preview) {
        if (preview) {
            const planned: Props = { ...olds, ttl: news.ttl ?? 3600, labels: news.labels ?? {} };
            if (news.deleteProtection !== undefined) planned.deleteProtection = news.deleteProtection;
            if (news.primaryNameservers !== undefined) planned.primaryNameservers = news.primaryNameservers;
            return planned;
        }
        const z = await project.update((p) => {
            const z = p.zones[id];
            if (!z) throw frameworkError(`zone with ID '${id}' not found`, "not_found", 404);
            // Resource.Update, in its order: ttl, primary nameservers, protection, then the labels.
            const ttl = num(news.ttl) ?? 3600;
            if (ttl !== z.ttl) {
                const bad = ttlProblem(ttl);
                if (bad) throw invalidField("ttl", [bad]);
                z.ttl = ttl;
            }
            if (news.primaryNameservers !== undefined && !deepEqual(olds.primaryNameservers, news.primaryNameservers)) {
                if (z.mode !== "secondary") throw frameworkError("zone is not in secondary mode", "incorrect_zone_mode", 422);
                z.primary_nameservers = primaryNameserversOf(news.primaryNameservers);
            }
            if (bool(news.deleteProtection) !== undefined) z.protection.delete = bool(news.deleteProtection)!;
            z.labels = labelsOf(news.labels);
            return z;
        });
        return zoneFields(z);
    },

    // A zone that is gone is no error; deleting one deletes its RRSets.
    async delete(_ctx, id) {
        await project.update((p) => {
            const z = p.zones[id];
            if (!z) return;
            if (z.protection.delete) throw frameworkError("zone deletion is protected", "protected", 423);
            for (const [key, r] of Object.entries(p.rrsets)) if (r.zone === z.id) delete p.rrsets[key];
            delete p.zones[id];
        });
    },
};

// ---------------------------------------------------------------------------------------------
// ZoneRrset (internal/zonerrset/resource.go, plugin framework)

interface RecordValue {
    value: string;
    comment?: string;
}

function recordsOf(v: unknown): RecordValue[] {
    return (arr(v) ?? []).map((e) => {
        const r = obj(e) ?? {};
        const out: RecordValue = { value: str(r.value) ?? "" };
        if (str(r.comment)) out.comment = str(r.comment);
        return out;
    });
}

/** A set: order does not matter (the API does not keep it either). */
function recordSet(records: RecordValue[]): string[] {
    return records.map((r) => JSON.stringify([r.value, r.comment ?? null])).sort();
}

/** OverrideRecordsSOASerial: the SOA's serial (third field) reads 0 in the state. */
function stateRecords(r: RRSetRecord): Props[] {
    return r.records.map((rec) => {
        let value = rec.value;
        if (r.type === "SOA") {
            const parts = value.split(" ");
            if (parts.length > 2) parts[2] = "0";
            value = parts.join(" ");
        }
        return rec.comment ? { value, comment: rec.comment } : { value };
    });
}

/** model.FromAPI; `zone` stays as the program gave it (an id or a name). */
function rrsetOutputs(r: RRSetRecord, zoneInput: unknown): Props {
    const out: Props = {
        zone: zoneInput,
        name: r.name,
        type: r.type,
        labels: r.labels,
        changeProtection: r.protection.change,
        records: stateRecords(r),
    };
    if (r.ttl !== null) out.ttl = r.ttl;
    return out;
}

/** TXT values are one or more quoted strings (the resource's documentation, the API's rule). */
const TXT_VALUE = /^("([^"\\]|\\.){0,255}")(\s+"([^"\\]|\\.){0,255}")*$/;

/** What the API refuses in an RRSet's name, type, TTL or records, as one invalid field. */
function rrsetProblem(z: ZoneRecord, name: string, type: string, ttl: number | null, records: RecordValue[]): Error | undefined {
    if (!RRSET_TYPES.includes(type)) return invalidField("type", [`value must be one of: ${RRSET_TYPES.join(", ")}`]);
    if (name === "" || name !== name.toLowerCase() || name.endsWith(".") || name === z.name || name.endsWith(`.${z.name}`)) {
        return invalidField("name", ["must be in lower case, and must not end with a dot or the zone name; use @ for the zone apex"]);
    }
    const ttlBad = ttlProblem(ttl);
    if (ttlBad) return invalidField("ttl", [ttlBad]);
    return recordsProblem(type, records);
}

function recordsProblem(type: string, records: RecordValue[]): Error | undefined {
    if (records.length === 0) return invalidField("records", ["must not be empty"]);
    const values = records.map((r) => r.value);
    if (new Set(values).size !== values.length) return invalidField("records", ["must only contain distinct record values"]);
    for (const v of values) {
        if (type === "A" && !isIPv4(v)) return invalidField("records", [`invalid IPv4 address: ${v}`]);
        if (type === "AAAA" && !isIPv6(v)) return invalidField("records", [`invalid IPv6 address: ${v}`]);
        if (type === "TXT" && !TXT_VALUE.test(v)) return invalidField("records", [`invalid TXT record: ${v}`]);
    }
    return undefined;
}

function zoneNotFound(): Error {
    return frameworkError("zone not found", "not_found", 404);
}

function notPrimary(): Error {
    return frameworkError("zone is not in primary mode", "incorrect_zone_mode", 422);
}

function rrsetProtected(): Error {
    return frameworkError("RRSet is change protected", "protected", 423);
}

const zoneRrset: ResourceType = {
    check(ctx, olds, news, seed) {
        const failures: CheckFailure[] = [];
        const { name } = nameFor(ctx, olds, news, seed);
        const labels = labelProblem(news.labels);
        if (labels) failures.push(resourceFailure(`Invalid label. ${labels.text}`, ctx.name, `labels.${labels.key}`));
        const records = arr(news.records);
        if (records && records.length === 0) {
            failures.push(resourceFailure("Invalid Attribute Value. Attribute records set must contain at least 1 elements, got: 0", ctx.name, "records"));
        }
        return { inputs: { ...news, name }, failures };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const acc: Record<string, DiffKind> = {};
        compare(acc, "zone", olds.zone, news.zone, true);
        compare(acc, "name", olds.name, news.name, true);
        compare(acc, "type", olds.type, news.type, true);
        compare(acc, "ttl", olds.ttl, news.ttl);
        compareLabels(acc, olds.labels, news.labels ?? {});
        if (news.changeProtection !== undefined) compare(acc, "changeProtection", olds.changeProtection, news.changeProtection);
        if (containsUnknown(news.records)) acc.records = "update";
        else if (!deepEqual(recordSet(recordsOf(olds.records)), recordSet(recordsOf(news.records)))) acc.records = "update";
        return diffOf(acc);
    },

    async create(ctx, news, preview) {
        if (preview) {
            const outs: Props = {
                zone: news.zone,
                name: news.name,
                type: news.type,
                labels: news.labels ?? {},
                changeProtection: news.changeProtection ?? UNKNOWN,
                records: news.records,
            };
            if (news.ttl !== undefined) outs.ttl = news.ttl;
            return { id: "", outs };
        }
        await seedZones();
        const zoneInput = String(news.zone);
        const name = String(news.name);
        const type = String(news.type);
        const ttl = num(news.ttl) ?? null;
        const records = recordsOf(news.records);
        const change = bool(news.changeProtection);
        if (type === "SOA") {
            // The SOA RRSet is the API's: imported into the state, not created.
            await ctx.log("warning", "SOA records are managed by the API: Importing the SOA record (managed by the API) in the state.", { urn: ctx.urn });
        }
        const record = await project.update((p) => {
            const z = zoneByIdOrName(p, zoneInput);
            if (!z) throw zoneNotFound();
            if (z.mode !== "primary") throw notPrimary();
            const key = rrsetKey(z.id, name, type);
            let r: RRSetRecord;
            if (type === "SOA") {
                const found = p.rrsets[key];
                if (!found) throw new Error(`Resource not found: Resource (zone rrset) was not found: id=${name}/${type}`);
                r = found;
            } else {
                const problem = rrsetProblem(z, name, type, ttl, records);
                if (problem) throw problem;
                if (p.rrsets[key]) throw frameworkError("RRSet already exists", "uniqueness_error", 409);
                r = { id: `${name}/${type}`, zone: z.id, name, type, ttl, labels: labelsOf(news.labels), protection: { change: false }, records };
                p.rrsets[key] = r;
                bumpSerial(p, z);
            }
            // Create: ChangeRRSetProtection when change_protection is set (true or false).
            if (change !== undefined) r.protection.change = change;
            return r;
        });
        return { id: record.id, outs: rrsetOutputs(record, news.zone) };
    },

    async read(_ctx, id, state, inputs) {
        await seedZones();
        const p = project.read();
        const z = zoneByIdOrName(p, String(state.zone ?? inputs.zone ?? ""));
        const [name, type] = id.split("/");
        const r = z ? p.rrsets[rrsetKey(z.id, name, type)] : undefined;
        return r ? { id, props: rrsetOutputs(r, state.zone ?? inputs.zone), inputs } : undefined;
    },

    async update(_ctx, id, olds, news, _oldInputs, preview) {
        if (preview) {
            const planned: Props = { ...olds, labels: news.labels ?? {}, records: news.records };
            if (news.ttl !== undefined) planned.ttl = news.ttl;
            else delete planned.ttl;
            if (news.changeProtection !== undefined) planned.changeProtection = news.changeProtection;
            return planned;
        }
        const change = bool(news.changeProtection);
        const r = await project.update((p) => {
            const z = zoneByIdOrName(p, String(olds.zone));
            if (!z) throw zoneNotFound();
            if (z.mode !== "primary") throw notPrimary();
            const [name, type] = id.split("/");
            const r = p.rrsets[rrsetKey(z.id, name, type)];
            if (!r) throw frameworkError("RRSet not found", "not_found", 404);
            // Resource.Update, in its order: protection off first, then ttl, records, labels,
            // protection on last.
            if (change === false && r.protection.change) r.protection.change = false;
            const ttl = num(news.ttl) ?? null;
            if (ttl !== (num(olds.ttl) ?? null)) {
                if (r.protection.change) throw rrsetProtected();
                const bad = ttlProblem(ttl);
                if (bad) throw invalidField("ttl", [bad]);
                r.ttl = ttl;
                bumpSerial(p, z);
            }
            const records = recordsOf(news.records);
            if (!deepEqual(recordSet(recordsOf(olds.records)), recordSet(records))) {
                if (r.protection.change) throw rrsetProtected();
                const bad = recordsProblem(r.type, records);
                if (bad) throw bad;
                r.records = records;
                bumpSerial(p, z);
            }
            r.labels = labelsOf(news.labels);
            if (change === true) r.protection.change = true;
            return r;
        });
        return rrsetOutputs(r, news.zone);
    },

    // The SOA RRSet is only forgotten; one that is gone (or whose zone is) is no error.
    async delete(ctx, id, state) {
        if (state.type === "SOA") {
            await ctx.log("warning", "SOA records are managed by the API: Removing the SOA record (managed by the API) from the state.", { urn: ctx.urn });
            return;
        }
        await project.update((p) => {
            const z = zoneByIdOrName(p, String(state.zone));
            if (!z) return;
            const [name, type] = id.split("/");
            const key = rrsetKey(z.id, name, type);
            const r = p.rrsets[key];
            if (!r) return;
            if (r.protection.change) throw rrsetProtected();
            delete p.rrsets[key];
            bumpSerial(p, z);
        });
    },
};

// ---------------------------------------------------------------------------------------------
// Invokes: getZone, getZones (internal/zone/data_source.go, data_source_list.go)

function zoneResult(z: ZoneRecord): Props {
    return { id: z.id, ...zoneFields(z) };
}

function zonesBySelector(p: Project, selector: string): ZoneRecord[] {
    return Object.values(p.zones)
        .filter((z) => selects(selector, z.labels))
        .sort((a, b) => a.id - b.id);
}

export const dnsFunctions: Record<string, Invoke> = {
    "hcloud:index/getZone:getZone": async (args) => {
        const failures = exactlyOne(args, ["id", "name", "withSelector"], ["id", "name", "with_selector"]);
        if (failures) return { failures };
        await seedZones();
        const p = project.read();
        let z: ZoneRecord | undefined;
        if (args.id !== undefined && args.id !== null) {
            z = p.zones[String(args.id)];
            if (!z) throw notFound("zone", "id", args.id);
        } else if (args.name !== undefined && args.name !== null) {
            z = Object.values(p.zones).find((x) => x.name === str(args.name));
            if (!z) throw notFound("zone", "name", args.name);
        } else {
            // hcloudutil.GetOne, with the query the list sent.
            const selector = String(args.withSelector);
            const found = zonesBySelector(p, selector);
            const using = ` using label selector: ${selector}\n\nQuery parameters: label_selector=${selector}`;
            if (found.length === 0) throw new Error(`Resource not found: Resource (zone) was not found${using}`);
            if (found.length > 1) throw new Error(`Found more than one resource: Found more than one resource (zone)${using}`);
            z = found[0];
        }
        const result = zoneResult(z);
        if (args.withSelector !== undefined) result.withSelector = args.withSelector;
        return result;
    },
    "hcloud:index/getZones:getZones": async (args) => {
        await seedZones();
        const found = zonesBySelector(project.read(), str(args.withSelector) ?? "");
        const result: Props = { id: listId(found.map((z) => String(z.id))), zones: found.map(zoneResult) };
        if (args.withSelector !== undefined) result.withSelector = args.withSelector;
        return result;
    },
};

export const dnsResources: Record<string, ResourceType> = {
    "hcloud:index/zone:Zone": zone,
    "hcloud:index/zoneRrset:ZoneRrset": zoneRrset,
};
