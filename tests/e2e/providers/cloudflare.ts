// Stand-in for pulumi-resource-cloudflare (@pulumi/cloudflare 6.22.1): the invokes `getZone` (v6
// shape), `getZoneSetting` and `getIpRanges`, and the resources `DnsRecord`, `ZoneSetting` and
// `OriginCaCertificate`, over a fake Cloudflare account kept in $BLOG_E2E_CLOUD_DIR/cloudflare.json
// (zones seeded from $BLOG_E2E_CLOUDFLARE_ZONES) whose Origin CA really signs (lib/origin-ca.ts).
//
// Modelled on cloudflare/terraform-provider-cloudflare v5.22.0 (the newest release at hand;
// pulumi/pulumi-cloudflare master at 52f065c5 bridges v5.19.1, and the two agree on all of this
// but where noted; @pulumi/cloudflare 6.22.1's SDK has the v5.22.0 shapes, e.g. ZoneSetting's
// required zoneId):
//   internal/provider.go                          api_token: ^[0-9A-Za-z\-_]{40,80}$ (configuration only;
//                                                 CLOUDFLARE_API_TOKEN is read as is)
//   internal/customvalidator/sensitive_regex.go   the validation message
//   internal/services/dns_record/schema.go        zone_id and type RequiresReplace; proxied defaults
//                                                 to false; computed created_on, modified_on,
//                                                 proxiable, meta, comment_modified_on, tags...
//   internal/services/dns_record/resource.go      Create refuses proxied with a TTL other than 1
//                                                 (Update does not check: the stand-in refuses there
//                                                 too, see update); state is what the API answers
//                                                 (the full name)
//   internal/services/dns_record/custom.go (v5.19.1 resource.go ModifyPlan)   a name that names the
//                                                 same record as the state's FQDN is no change;
//                                                 normalizeSettings (settings only for CNAME)
//   internal/services/zone/data_source.go         getZone by zone_id or filter ("failed to find
//                                                 exactly one result"); errors as "failed to make
//                                                 http request: <cloudflare-go error>"
//   internal/services/zone_setting/schema.go      zone_id, setting_id RequiresReplace; value (dynamic)
//                                                 and enabled update in place; editable, modified_on,
//                                                 time_remaining computed
//   internal/services/zone_setting/resource.go    Create and Update PATCH the setting (Update sends only
//                                                 what changed: apijson MarshalForPatch); id = setting_id;
//                                                 Delete does nothing (the setting stays as it is);
//                                                 ModifyPlan warns at create ("Resource Destruction
//                                                 Considerations"), which the bridge logs
//                                                 (pulumi/pulumi-terraform-bridge pkg/pf/tfbridge/
//                                                 provider_create.go, provider_diagnostics.go)
//   internal/services/zone_setting/data_source*.go getZoneSetting: zone_id optional, value a string
//   internal/services/origin_ca_certificate/schema.go   csr, request_type (one of, case-insensitive),
//                                                 hostnames RequiresReplace; requested_validity one of
//                                                 7..5475, default 5475, RequiresReplaceIfConfigured;
//                                                 certificate, expires_on computed
//   internal/services/origin_ca_certificate/resource.go   Create POSTs /certificates; Update does nothing
//                                                 (the plan becomes the state); Read keeps csr and
//                                                 requested_validity from the state (#5415), drops a 404;
//                                                 Delete revokes (DELETE /certificates/<id>)
//   internal/services/origin_ca_certificate/resource_test.go   the API does not match the CSR's names
//                                                 against `hostnames` (a CSR for *.<domain> is issued for
//                                                 ["*.<domain>", "<domain>"]): the certificate's names are
//                                                 the hostnames
//   internal/services/ip_ranges/data_source*.go   getIpRanges: networks optional; etag, ipv4_cidrs,
//                                                 ipv6_cidrs, jdcloud_cidrs computed (GET /ips, no
//                                                 credentials needed)
//   internal/apijson/decoder.go                   UnmarshalComputed: a computed value the API leaves out
//                                                 is null (so `enabled`/`timeRemaining` of "ssl" are absent)
// API answers: code 7003/7000 for an unknown zone id (reported widely, e.g. cloudflare/cloudflare-go#118,
// timothymiller/cloudflare-ddns#152), 81058 "An identical record already exists.", 9005 "Content for
// A record must be a valid IPv4 address.", 1006 "Unrecognized zone setting name: <name>"
// (cloudflare/terraform-provider-cloudflare#1787, #1810), 1007 "Invalid value for zone setting
// <name>" (#5423; also for a PATCH without a value, pulumi/pulumi-cloudflare#1319).
// The Origin CA: request_type picks the signing root, whatever the CSR's key (origin-ecc signs with
// the ECDSA root: cloudflare/origin-ca-issuer#72, #75); the certificate's subject is O "CloudFlare,
// Inc.", OU "CloudFlare Origin CA", CN "CloudFlare Origin Certificate", valid from the minute of
// issue for requested_validity days; expires_on is Go's time.String ("2041-03-22 15:51:00 +0000
// UTC": cloudflare/cloudflare-go v0 origin_ca.go parses that format); the id is the serial number
// (the API revokes "an existing Origin CA certificate by its serial number": cloudflare-typescript
// src/resources/origin-ca-certificates.ts), written in decimal (the stand-in's choice). Up to 100 names, no IP addresses, `*.` only as a whole first label of a multi-label
// name (Cloudflare's Origin CA documentation and the schema's description), and only names in the
// account's zones; the CSR must parse and its signature verify. The codes and words of those
// refusals, and of revoking an unknown certificate, are the stand-in's own (not found in any source
// at hand).
import { createHash, randomBytes } from "crypto";
import { isIP, isIPv4, isIPv6 } from "net";
import { configFailure, resourceFailure } from "./lib/bridge";
import { CheckFailure, Invoke, ResourceType, serve } from "./lib/host";
import { pem } from "./lib/openssh";
import { ensureOriginCa } from "./lib/origin-ca";
import { pinnedVersion } from "./lib/repo";
import { Store, cloudDir } from "./lib/store";
import { DiffKind, Props, UNKNOWN, arr, bool, containsUnknown, deepEqual, isUnknown, num, obj, str } from "./lib/values";
import { createCertificate, newSerial, parseCsr } from "./lib/x509";

const API = "https://api.cloudflare.com/client/v4";

interface ZoneRecord {
    id: string;
    name: string;
    status: string;
    account: { id: string; name: string };
    name_servers: string[];
    created_on: string;
}
interface ZoneSettingRecord {
    id: string;
    value: unknown;
    editable: boolean;
    modified_on: string | null;
}
interface OriginCaCertificateRecord {
    id: string;
    certificate: string;
    csr: string;
    hostnames: string[];
    request_type: string;
    requested_validity: number;
    expires_on: string;
    revoked_at?: string;
}
interface IpRanges {
    ipv4_cidrs: string[];
    ipv6_cidrs: string[];
    jdcloud_cidrs?: string[];
    etag?: string;
}
interface DnsRecordRecord {
    id: string;
    zone_id: string;
    zone_name: string;
    name: string;
    type: string;
    content: string;
    ttl: number;
    proxied: boolean;
    proxiable: boolean;
    comment?: string;
    tags: string[];
    created_on: string;
    modified_on: string;
    comment_modified_on?: string;
}
interface Account {
    zones: Record<string, ZoneRecord>;
    records: Record<string, DnsRecordRecord>;
    /** Per zone id, its settings by name (the API's shape); a zone's are written when it is added. */
    zone_settings?: Record<string, Record<string, ZoneSettingRecord>>;
    origin_ca_certificates?: Record<string, OriginCaCertificateRecord>;
    /** Cloudflare's address ranges as getIpRanges answers them; CLOUDFLARE_IPS when absent. */
    ip_ranges?: IpRanges;
}

const account = new Store<Account>("cloudflare.json", () => ({ zones: {}, records: {} }));

const hex32 = () => randomBytes(16).toString("hex");
const now = () => new Date().toISOString().replace(/Z$/, "000Z");

/**
 * Zones from $BLOG_E2E_CLOUDFLARE_ZONES, added to the account on first sight: `{"<id>": "<name>"}`
 * or `{"<id>": {"name": "<name>", "settings": {"ssl": "flexible", ...}}}` (settings' values as the
 * API has them; unnamed settings keep the defaults of SETTINGS).
 */
async function zones(): Promise<Record<string, ZoneRecord>> {
    const fromEnv = JSON.parse(process.env.BLOG_E2E_CLOUDFLARE_ZONES || "{}") as Record<string, string | { name: string; settings?: Record<string, unknown> }>;
    const known = account.read().zones;
    if (Object.keys(fromEnv).every((id) => known[id])) return known;
    return account.update((a) => {
        for (const [id, spec] of Object.entries(fromEnv)) {
            if (a.zones[id]) continue;
            const { name, settings } = typeof spec === "string" ? { name: spec, settings: undefined } : spec;
            a.zones[id] = {
                id,
                name,
                status: "active",
                account: { id: "e2e0000000000000000000000000acc0", name: "blog e2e" },
                name_servers: ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                created_on: now(),
            };
            const values: Record<string, unknown> = { ...Object.fromEntries(Object.entries(SETTINGS).map(([k, d]) => [k, d.value])), ...settings };
            a.zone_settings = {
                ...a.zone_settings,
                [id]: Object.fromEntries(Object.entries(values).map(([k, value]) => [k, { id: k, value, editable: true, modified_on: null }])),
            };
        }
        return a.zones;
    });
}

/** cloudflare-go's apierror text: method, URL, status, the response body. */
function apiError(method: string, urlPath: string, status: number, errors: { code: number; message: string }[]): Error {
    const statusText: Record<number, string> = { 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found" };
    const body = JSON.stringify({ success: false, errors, messages: [], result: null });
    return new Error(`failed to make http request: ${method} "${API}${urlPath}": ${status} ${statusText[status] ?? ""} ${body}`);
}

function noRoute(method: string, urlPath: string): Error {
    return apiError(method, urlPath, 400, [
        { code: 7003, message: `Could not route to /client/v4${urlPath}, perhaps your object identifier is invalid?` },
        { code: 7000, message: "No route for that URI" },
    ]);
}

/**
 * No credentials at all: the API's answer to a request without any. An Origin CA key (a "user
 * service key": the provider's `apiUserServiceKey`, CLOUDFLARE_API_USER_SERVICE_KEY, sent as
 * X-Auth-User-Service-Key) is no credential any more: Cloudflare stopped accepting them on
 * 2026-09-30 (../shared/REFERENCE.md, "Findings of the 2026-12 source reviews"); the Origin CA
 * endpoints take an API token with Zone > SSL and Certificates > Edit
 * (developers.cloudflare.com/fundamentals/api/get-started/ca-keys/). The refusal's code and words
 * for a service key alone are the stand-in's own (no source at hand words the API's).
 */
function requireCredentials(config: Props, method: string, urlPath: string): void {
    if (str(config.apiToken) || process.env.CLOUDFLARE_API_TOKEN || str(config.apiKey) || process.env.CLOUDFLARE_API_KEY) return;
    if (str(config.apiUserServiceKey) || process.env.CLOUDFLARE_API_USER_SERVICE_KEY) {
        throw apiError(method, urlPath, 401, [
            { code: 10000, message: "Origin CA keys (X-Auth-User-Service-Key) are no longer accepted: use an API token with SSL and Certificates: Edit" },
        ]);
    }
    throw apiError(method, urlPath, 400, [{ code: 9106, message: "Missing X-Auth-Key, X-Auth-Email or Authorization headers" }]);
}

// ---------------------------------------------------------------------------------------------
// getZone (internal/services/zone/data_source.go)

function zoneResult(z: ZoneRecord, filter: unknown): Props {
    const result: Props = {
        account: z.account,
        activatedOn: z.created_on,
        cnameSuffix: "",
        createdOn: z.created_on,
        developmentMode: 0,
        id: z.id,
        meta: { cdnOnly: false, customCertificateQuota: 0, dnsOnly: false, foundationDns: false, pageRuleQuota: 3, phishingDetected: false, step: 2 },
        modifiedOn: z.created_on,
        name: z.name,
        nameServers: z.name_servers,
        originalDnshost: "",
        originalNameServers: [],
        originalRegistrar: "",
        owner: { id: "", name: "", type: "" },
        paused: false,
        permissions: [],
        plan: {
            canSubscribe: false,
            currency: "USD",
            externallyManaged: false,
            frequency: "",
            id: "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
            isSubscribed: true,
            legacyDiscount: false,
            legacyId: "free",
            name: "Free Website",
            price: 0,
        },
        status: z.status,
        tenant: { id: "", name: "" },
        tenantUnit: { id: "" },
        type: "full",
        vanityNameServers: [],
        verificationKey: "",
        zoneId: z.id,
    };
    if (filter !== undefined) result.filter = filter;
    return result;
}

const getZone: Invoke = async (args, { config }) => {
    const all = await zones();
    const filter = obj(args.filter);
    if (filter) {
        requireCredentials(config, "GET", "/zones");
        const name = str(filter.name);
        const accountId = str(obj(filter.account)?.id);
        const status = str(filter.status);
        const found = Object.values(all).filter(
            (z) => (name === undefined || z.name === name) && (accountId === undefined || z.account.id === accountId) && (status === undefined || z.status === status),
        );
        if (found.length !== 1) throw new Error(`failed to find exactly one result: ${found.length} found`);
        return zoneResult(found[0], { match: "all", ...filter });
    }
    const zoneId = str(args.zoneId) ?? "";
    requireCredentials(config, "GET", `/zones/${zoneId}`);
    const z = all[zoneId];
    if (!z) throw noRoute("GET", `/zones/${zoneId}`);
    return zoneResult(z, undefined);
};

// ---------------------------------------------------------------------------------------------
// DnsRecord (internal/services/dns_record)

// terraform-provider-cloudflare v5.22.0 internal/services/dns_record/schema.go: the record types the `type` validator accepts (case-insensitively).
const TYPES = ["A", "AAAA", "CNAME", "MX", "NS", "OPENPGPKEY", "PTR", "TXT", "CAA", "CERT", "DNSKEY", "DS", "HTTPS", "LOC", "NAPTR", "SMIMEA", "SRV", "SSHFP", "SVCB", "TLSA", "URI"];
// cloudflare/terraform-provider-cloudflare v5.22.0 (and v5.19.1) internal/services/dns_record/schema.go:
// zone_id and type carry RequiresReplace.
const REPLACE_ON = ["zoneId", "type"];
// Attributes the configuration sets that a change updates in place.
const IN_PLACE = ["content", "ttl", "proxied", "comment", "priority", "data", "privateRouting", "tags", "settings"];

/** The full name the API stores: `@` is the apex, a name outside the zone is taken as relative to it. */
function fullName(name: string, zone: string): string {
    const n = name.replace(/\.$/, "").toLowerCase();
    if (n === "@" || n === zone) return zone;
    return n.endsWith(`.${zone}`) ? n : `${n}.${zone}`;
}

/** The v5 ModifyPlan rule: a configured name that is the state's FQDN or a prefix of it keeps the state's. */
function plannedName(config: string, state: string | undefined): string {
    if (state === undefined) return config;
    const c = config.replace(/\.$/, "");
    const s = state.replace(/\.$/, "");
    if (config === "@" && state !== "@" && state.includes(".")) return state;
    if (s.startsWith(`${c}.`)) return state;
    if (c !== s) {
        const cp = c.split(".");
        const sp = s.split(".");
        if (cp.length < sp.length && cp.every((part, i) => part === sp[i])) return state;
    }
    return config;
}

function recordOutputs(r: DnsRecordRecord): Props {
    const out: Props = {
        zoneId: r.zone_id,
        name: r.name,
        type: r.type,
        content: r.content,
        ttl: r.ttl,
        proxied: r.proxied,
        proxiable: r.proxiable,
        tags: r.tags,
        meta: "{}",
        createdOn: r.created_on,
        modifiedOn: r.modified_on,
    };
    if (r.comment !== undefined) out.comment = r.comment;
    if (r.comment_modified_on !== undefined) out.commentModifiedOn = r.comment_modified_on;
    return out;
}

/** What the API refuses in a record this program could send. */
function recordProblem(type: string, content: string): Error | undefined {
    if (type === "A" && !isIPv4(content)) return new Error(JSON.stringify({ code: 9005, message: "Content for A record must be a valid IPv4 address." }));
    if (type === "AAAA" && !isIPv6(content)) return new Error(JSON.stringify({ code: 9005, message: "Content for AAAA record must be a valid IPv6 address." }));
    return undefined;
}

/** internal/services/dns_record/resource.go Create's diagnostic (summary: detail), as the bridge reports it. */
const PROXIED_TTL =
    "ttl must be set to 1 when `proxied` is true: When a DNS record is marked as `proxied` the TTL must be 1 as Cloudflare will control the TTL internally.";

const dnsRecord: ResourceType = {
    check(ctx, _olds, news) {
        const failures: CheckFailure[] = [];
        const type = str(news.type);
        if (type !== undefined && !TYPES.includes(type.toUpperCase())) {
            failures.push(
                resourceFailure(
                    `Invalid Attribute Value Match. Attribute type value must be one of: [${TYPES.map((t) => `"${t}"`).join(" ")}], got: "${type}"`,
                    ctx.name,
                    "type",
                ),
            );
        }
        if (news.content !== undefined && news.data !== undefined) {
            failures.push(resourceFailure('Invalid Attribute Combination. Attribute "data" cannot be specified when "content" is specified', ctx.name, "content"));
        }
        // The plugin-framework bridge leaves defaults (proxied = false) to the plan.
        return { inputs: news, failures };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const acc: Record<string, DiffKind> = {};
        const change = (k: string, o: unknown, n: unknown, replace: boolean) => {
            if (!isUnknown(n) && deepEqual(o ?? null, n ?? null)) return;
            const kind: DiffKind = o === undefined || o === null ? "add" : n === undefined || n === null ? "delete" : "update";
            acc[k] = replace ? (`${kind}-replace` as DiffKind) : kind;
        };
        for (const k of REPLACE_ON) change(k, olds[k], news[k], true);
        const name = isUnknown(news.name) ? UNKNOWN : plannedName(String(news.name), str(olds.name));
        change("name", olds.name, name, false);
        for (const k of IN_PLACE) {
            if (k === "proxied") change(k, olds.proxied ?? false, news.proxied ?? false, false);
            else if (k === "tags") change(k, arr(olds.tags) ?? [], news.tags ?? arr(olds.tags) ?? [], false);
            else if (k === "content" && news.content === undefined) continue;
            else if (k === "settings" && news.settings === undefined) continue;
            else change(k, olds[k], news[k], false);
        }
        return { changes: Object.keys(acc).length > 0, detailedDiff: acc };
    },

    async create(ctx, news, preview) {
        const proxied = bool(news.proxied) ?? false;
        if (preview) {
            const outs: Props = { ...news, proxied, id: UNKNOWN };
            for (const k of ["proxiable", "createdOn", "modifiedOn", "meta", "tags"]) outs[k] = news[k] ?? UNKNOWN;
            if (news.comment !== undefined) outs.commentModifiedOn = UNKNOWN;
            return { id: "", outs };
        }
        const ttl = num(news.ttl) ?? 1;
        if (proxied && ttl !== 1) throw new Error(PROXIED_TTL);
        const zoneId = String(news.zoneId);
        const urlPath = `/zones/${zoneId}/dns_records`;
        requireCredentials(ctx.config, "POST", urlPath);
        const zone = (await zones())[zoneId];
        if (!zone) throw noRoute("POST", urlPath);
        const type = String(news.type).toUpperCase();
        const content = String(news.content ?? "");
        const problem = recordProblem(type, content);
        if (problem) throw apiError("POST", urlPath, 400, [JSON.parse(problem.message) as { code: number; message: string }]);
        const record = await account.update((a) => {
            const name = fullName(String(news.name), zone.name);
            if (Object.values(a.records).some((r) => r.zone_id === zoneId && r.name === name && r.type === type && r.content === content)) {
                throw apiError("POST", urlPath, 400, [{ code: 81058, message: "An identical record already exists." }]);
            }
            const t = now();
            const r: DnsRecordRecord = {
                id: hex32(),
                zone_id: zoneId,
                zone_name: zone.name,
                name,
                type,
                content,
                ttl,
                proxied,
                proxiable: ["A", "AAAA", "CNAME"].includes(type),
                tags: (arr(news.tags) ?? []).map(String),
                created_on: t,
                modified_on: t,
            };
            if (str(news.comment) !== undefined) {
                r.comment = str(news.comment);
                r.comment_modified_on = t;
            }
            a.records[r.id] = r;
            return r;
        });
        return { id: record.id, outs: recordOutputs(record) };
    },

    async read(_ctx, id, _state, inputs) {
        const r = account.read().records[id];
        return r ? { id, props: recordOutputs(r), inputs } : undefined;
    },

    async update(ctx, id, olds, news, _oldInputs, preview) {
        if (preview) {
            const name = plannedName(String(news.name), str(olds.name));
            return { ...olds, ...news, name, proxied: bool(news.proxied) ?? false, modifiedOn: UNKNOWN };
        }
        const zoneId = String(olds.zoneId);
        const urlPath = `/zones/${zoneId}/dns_records/${id}`;
        // A proxied record keeps Cloudflare's TTL ("Auto, which is set to 300 seconds. This value
        // cannot be edited": developers.cloudflare.com/dns/manage-dns-records/reference/ttl). The v5
        // provider checks it at Create only; its v4 Update refused it too, in the same words
        // (resource_cloudflare_record.go resourceCloudflareRecordUpdate). Whether today's API refuses
        // such a PATCH or keeps Auto was not verifiable here: the stand-in refuses, so that no test
        // passes on a record the real service would not hold.
        const ttl = num(news.ttl) ?? num(olds.ttl) ?? 1;
        if ((bool(news.proxied) ?? false) && ttl !== 1) throw new Error(PROXIED_TTL);
        requireCredentials(ctx.config, "PATCH", urlPath);
        const type = String(olds.type);
        const content = String(news.content ?? olds.content ?? "");
        const problem = recordProblem(type, content);
        if (problem) throw apiError("PATCH", urlPath, 400, [JSON.parse(problem.message) as { code: number; message: string }]);
        const record = await account.update((a) => {
            const r = a.records[id];
            if (!r) throw apiError("PATCH", urlPath, 404, [{ code: 81044, message: "Record does not exist." }]);
            const t = now();
            r.name = fullName(plannedName(String(news.name), r.name), r.zone_name);
            r.content = content;
            r.ttl = num(news.ttl) ?? r.ttl;
            r.proxied = bool(news.proxied) ?? false;
            r.tags = (arr(news.tags) ?? r.tags).map(String);
            const comment = str(news.comment);
            if (comment !== r.comment) {
                r.comment = comment;
                r.comment_modified_on = comment === undefined ? undefined : t;
            }
            r.modified_on = t;
            return r;
        });
        return recordOutputs(record);
    },

    async delete(ctx, id, state) {
        const urlPath = `/zones/${String(state.zoneId)}/dns_records/${id}`;
        requireCredentials(ctx.config, "DELETE", urlPath);
        await account.update((a) => {
            if (!a.records[id]) throw apiError("DELETE", urlPath, 404, [{ code: 81044, message: "Record does not exist." }]);
            delete a.records[id];
        });
    },
};

// ---------------------------------------------------------------------------------------------
// Zone settings (internal/services/zone_setting)

/**
 * The settings the stand-in knows, their values when the zone never changed them, and what the API
 * accepts (Cloudflare's zone settings API: ssl off/flexible/full/strict, always_use_https on/off,
 * min_tls_version 1.0-1.3). The real default of `ssl` depends on the zone's age and plan (newer
 * zones start with Automatic SSL/TLS): the stand-in's new zones are in "full" mode. Seeded settings
 * of other names (BLOG_E2E_CLOUDFLARE_ZONES) exist with any value; others are unrecognized (1006).
 */
const SETTINGS: Record<string, { value: string; values: string[] }> = {
    ssl: { value: "full", values: ["off", "flexible", "full", "strict"] },
    always_use_https: { value: "off", values: ["on", "off"] },
    min_tls_version: { value: "1.0", values: ["1.0", "1.1", "1.2", "1.3"] },
};

function settingOf(a: Account, zoneId: string, settingId: string): ZoneSettingRecord | undefined {
    const stored = a.zone_settings?.[zoneId]?.[settingId];
    if (stored) return stored;
    const known = SETTINGS[settingId];
    return known ? { id: settingId, value: known.value, editable: true, modified_on: null } : undefined;
}

const unrecognized = (method: string, urlPath: string, settingId: string) =>
    apiError(method, urlPath, 400, [{ code: 1006, message: `Unrecognized zone setting name: ${settingId}` }]);
const invalidValue = (method: string, urlPath: string, settingId: string) =>
    apiError(method, urlPath, 400, [{ code: 1007, message: `Invalid value for zone setting ${settingId}` }]);

/** PATCH /zones/<zone>/settings/<setting>: the new value (absent: the PATCH had none) is checked and stored. */
async function patchSetting(config: Props, zoneId: string, settingId: string, value: unknown): Promise<ZoneSettingRecord> {
    const urlPath = `/zones/${zoneId}/settings/${settingId}`;
    requireCredentials(config, "PATCH", urlPath);
    await zones();
    return account.update((a) => {
        if (!a.zones[zoneId]) throw noRoute("PATCH", urlPath);
        const current = settingOf(a, zoneId, settingId);
        if (!current) throw unrecognized("PATCH", urlPath, settingId);
        const allowed = SETTINGS[settingId]?.values;
        if (value === undefined || (allowed && !(typeof value === "string" && allowed.includes(value)))) throw invalidValue("PATCH", urlPath, settingId);
        const next: ZoneSettingRecord = { ...current, value, modified_on: now() };
        a.zone_settings = { ...a.zone_settings, [zoneId]: { ...a.zone_settings?.[zoneId], [settingId]: next } };
        return next;
    });
}

/** GET /zones/<zone>/settings/<setting>. */
async function getSetting(config: Props, zoneId: string, settingId: string): Promise<ZoneSettingRecord> {
    const urlPath = `/zones/${zoneId}/settings/${settingId}`;
    requireCredentials(config, "GET", urlPath);
    if (!(await zones())[zoneId]) throw noRoute("GET", urlPath);
    const setting = settingOf(account.read(), zoneId, settingId);
    if (!setting) throw unrecognized("GET", urlPath, settingId);
    return setting;
}

/** The resource's state: the configuration's zone and setting, what the API answers, `enabled` as configured. */
function settingOutputs(zoneId: string, settingId: string, r: ZoneSettingRecord, enabled: unknown): Props {
    const out: Props = { zoneId, settingId, value: r.value, editable: r.editable };
    if (r.modified_on !== null) out.modifiedOn = r.modified_on;
    if (typeof enabled === "boolean") out.enabled = enabled;
    return out;
}

const DESTRUCTION_WARNING =
    "[WARNING] This resource cannot be destroyed from Terraform. If you create this resource, it will be present in the API until manually deleted.: Resource Destruction Considerations";

const zoneSetting: ResourceType = {
    check(_ctx, _olds, news) {
        return { inputs: news };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const acc: Record<string, DiffKind> = {};
        const change = (k: string, o: unknown, n: unknown, replace: boolean) => {
            if (!containsUnknown(n) && deepEqual(o ?? null, n ?? null)) return;
            const kind: DiffKind = o === undefined || o === null ? "add" : n === undefined || n === null ? "delete" : "update";
            acc[k] = replace ? (`${kind}-replace` as DiffKind) : kind;
        };
        change("zoneId", olds.zoneId, news.zoneId, true);
        change("settingId", olds.settingId, news.settingId, true);
        change("value", olds.value, news.value, false);
        // Optional and computed: left out, the state's value stands.
        if (news.enabled !== undefined) change("enabled", olds.enabled, news.enabled, false);
        return { changes: Object.keys(acc).length > 0, detailedDiff: acc };
    },

    async create(ctx, news, preview) {
        await ctx.log("warning", DESTRUCTION_WARNING, { urn: ctx.urn });
        if (preview) {
            const outs: Props = { zoneId: news.zoneId, settingId: news.settingId, value: news.value, editable: UNKNOWN, modifiedOn: UNKNOWN, timeRemaining: UNKNOWN };
            outs.enabled = news.enabled ?? UNKNOWN;
            return { id: "", outs };
        }
        const zoneId = String(news.zoneId);
        const settingId = String(news.settingId);
        const r = await patchSetting(ctx.config, zoneId, settingId, news.value);
        return { id: settingId, outs: settingOutputs(zoneId, settingId, r, news.enabled) };
    },

    async read(ctx, id, state, inputs) {
        const zoneId = String(state.zoneId);
        const settingId = String(state.settingId ?? id);
        const r = await getSetting(ctx.config, zoneId, settingId);
        return { id: settingId, props: settingOutputs(zoneId, settingId, r, state.enabled), inputs };
    },

    async update(ctx, id, olds, news, _oldInputs, preview) {
        if (preview) return { ...olds, ...news, editable: UNKNOWN, modifiedOn: UNKNOWN, timeRemaining: UNKNOWN, enabled: news.enabled ?? UNKNOWN };
        const zoneId = String(olds.zoneId);
        const settingId = String(olds.settingId ?? id);
        // MarshalForPatch sends only what changed: an unchanged value is not sent, and the API
        // refuses a PATCH without one (pulumi/pulumi-cloudflare#1319).
        const value = deepEqual(olds.value, news.value) ? undefined : news.value;
        const r = await patchSetting(ctx.config, zoneId, settingId, value);
        return settingOutputs(zoneId, settingId, r, news.enabled);
    },

    // zone_setting/resource.go Delete does nothing: the zone keeps the value the resource set.
    async delete() {},
};

const getZoneSetting: Invoke = async (args, { config }) => {
    const settingId = str(args.settingId) ?? "";
    const zoneId = str(args.zoneId) ?? "";
    const r = await getSetting(config, zoneId, settingId);
    const result: Props = { id: settingId, settingId, value: r.value, editable: r.editable };
    if (str(args.zoneId) !== undefined) result.zoneId = zoneId;
    if (r.modified_on !== null) result.modifiedOn = r.modified_on;
    return result;
};

// ---------------------------------------------------------------------------------------------
// getIpRanges (internal/services/ip_ranges)

/**
 * GET https://api.cloudflare.com/client/v4/ips as it answered in 2026 (etag
 * 38f79d050aa027e3be3865e495dcc9bc; the same 15 IPv4 and 7 IPv6 ranges as
 * https://www.cloudflare.com/ips-v4 and /ips-v6). cloudflare.json's `ip_ranges` replaces it.
 */
const CLOUDFLARE_IPS: Required<Omit<IpRanges, "jdcloud_cidrs">> = {
    ipv4_cidrs: [
        "173.245.48.0/20",
        "103.21.244.0/22",
        "103.22.200.0/22",
        "103.31.4.0/22",
        "141.101.64.0/18",
        "108.162.192.0/18",
        "190.93.240.0/20",
        "188.114.96.0/20",
        "197.234.240.0/22",
        "198.41.128.0/17",
        "162.158.0.0/15",
        "104.16.0.0/13",
        "104.24.0.0/14",
        "172.64.0.0/13",
        "131.0.72.0/22",
    ],
    ipv6_cidrs: ["2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32", "2405:8100::/32", "2a06:98c0::/29", "2c0f:f248::/32"],
    etag: "38f79d050aa027e3be3865e495dcc9bc",
};

const getIpRanges: Invoke = async (args) => {
    const ranges = account.read().ip_ranges;
    const v4 = ranges?.ipv4_cidrs ?? CLOUDFLARE_IPS.ipv4_cidrs;
    const v6 = ranges?.ipv6_cidrs ?? CLOUDFLARE_IPS.ipv6_cidrs;
    const etag = ranges ? (ranges.etag ?? createHash("md5").update(JSON.stringify([v4, v6])).digest("hex")) : CLOUDFLARE_IPS.etag;
    const result: Props = { ipv4Cidrs: v4, ipv6Cidrs: v6, etag };
    const networks = str(args.networks);
    if (networks !== undefined) result.networks = networks;
    // Only `?networks=jdcloud` answers jdcloud_cidrs (the stand-in knows no JD Cloud ranges but
    // those cloudflare.json gives); otherwise the API leaves it out and the result has none.
    if (networks === "jdcloud") result.jdcloudCidrs = ranges?.jdcloud_cidrs ?? [];
    return result;
};

// ---------------------------------------------------------------------------------------------
// OriginCaCertificate (internal/services/origin_ca_certificate)

const REQUEST_TYPES = ["origin-rsa", "origin-ecc", "keyless-certificate"];
const VALIDITIES = [7, 30, 90, 365, 730, 1095, 5475];
const DEFAULT_VALIDITY = 5475;
const DAY_MS = 86_400_000;

/** Go's time.Time.String() of a UTC time: "2041-03-22 15:51:00 +0000 UTC". */
function goTimeString(d: Date): string {
    return `${d.toISOString().slice(0, 19).replace("T", " ")} +0000 UTC`;
}

/** The Origin CA's refusals of a request's names (codes and words: the stand-in's; see the header). */
function hostnameProblems(hostnames: string[], zoneNames: string[]): string[] {
    if (hostnames.length === 0) return ["At least one hostname is required"];
    if (hostnames.length > 100) return [`At most 100 hostnames are allowed, got ${hostnames.length}`];
    const problems: string[] = [];
    for (const h of hostnames) {
        const name = h.toLowerCase().replace(/\.$/, "");
        const base = name.startsWith("*.") ? name.slice(2) : name;
        if (isIP(h)) problems.push(`IP addresses are not allowed as hostnames: ${h}`);
        else if (base.includes("*") || !base.includes(".")) problems.push(`Invalid hostname: ${h}`);
        else if (!zoneNames.some((z) => base === z || base.endsWith(`.${z}`))) problems.push(`Hostname ${h} is not in a zone of this account`);
    }
    return problems;
}

function originCertOutputs(r: OriginCaCertificateRecord, state: { csr: unknown; requestedValidity: unknown }): Props {
    return {
        csr: state.csr,
        requestType: r.request_type,
        hostnames: r.hostnames,
        requestedValidity: state.requestedValidity,
        certificate: r.certificate,
        expiresOn: r.expires_on,
    };
}

const originCaCertificate: ResourceType = {
    check(ctx, _olds, news) {
        const failures: CheckFailure[] = [];
        const requestType = str(news.requestType);
        if (requestType !== undefined && !REQUEST_TYPES.includes(requestType.toLowerCase())) {
            failures.push(
                resourceFailure(
                    `Invalid Attribute Value Match. Attribute request_type value must be one of: [${REQUEST_TYPES.map((t) => `"${t}"`).join(" ")}], got: "${requestType}"`,
                    ctx.name,
                    "requestType",
                ),
            );
        }
        const validity = num(news.requestedValidity);
        if (validity !== undefined && !VALIDITIES.includes(validity)) {
            const f = (n: number) => n.toFixed(6);
            failures.push(
                resourceFailure(
                    `Invalid Attribute Value Match. Attribute requested_validity value must be one of: [${VALIDITIES.map((v) => `"${f(v)}"`).join(" ")}], got: ${f(validity)}`,
                    ctx.name,
                    "requestedValidity",
                ),
            );
        }
        // The plugin-framework bridge leaves the default (requested_validity 5475) to the plan.
        return { inputs: news, failures };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const acc: Record<string, DiffKind> = {};
        const changed = (o: unknown, n: unknown) => containsUnknown(n) || !deepEqual(o ?? null, n ?? null);
        for (const k of ["csr", "requestType", "hostnames"]) if (changed(olds[k], news[k])) acc[k] = "update-replace";
        // RequiresReplaceIfConfigured: a configured validity replaces; left out, the default (5475)
        // is planned in place (and Update does nothing but store the plan).
        const validity = news.requestedValidity ?? DEFAULT_VALIDITY;
        if (changed(olds.requestedValidity, validity)) acc.requestedValidity = news.requestedValidity === undefined ? "update" : "update-replace";
        return { changes: Object.keys(acc).length > 0, detailedDiff: acc };
    },

    async create(ctx, news, preview) {
        const requestedValidity = news.requestedValidity ?? DEFAULT_VALIDITY;
        const planned = { csr: news.csr, requestType: news.requestType, hostnames: news.hostnames, requestedValidity };
        if (preview) return { id: "", outs: { ...planned, certificate: UNKNOWN, expiresOn: UNKNOWN } };
        const urlPath = "/certificates";
        requireCredentials(ctx.config, "POST", urlPath);
        const hostnames = (arr(news.hostnames) ?? []).map(String);
        const zoneNames = Object.values(await zones()).map((z) => z.name);
        const problems = hostnameProblems(hostnames, zoneNames);
        if (problems.length > 0) throw apiError("POST", urlPath, 400, problems.map((message) => ({ code: 1013, message })));
        let csr: ReturnType<typeof parseCsr>;
        try {
            csr = parseCsr(String(news.csr ?? ""));
        } catch (e) {
            throw apiError("POST", urlPath, 400, [{ code: 1010, message: `Failed to validate the certificate signing request: ${(e as Error).message}` }]);
        }
        const requestType = String(news.requestType);
        const roots = await ensureOriginCa(cloudDir());
        const root = requestType.toLowerCase() === "origin-ecc" ? roots.ecc : roots.rsa;
        const serial = newSerial();
        const notBefore = new Date(Math.floor(Date.now() / 60_000) * 60_000);
        const notAfter = new Date(notBefore.getTime() + Number(requestedValidity) * DAY_MS);
        const der = createCertificate(
            {
                serial: serial.bytes,
                subject: { organization: "CloudFlare, Inc.", organizationalUnit: "CloudFlare Origin CA", commonName: "CloudFlare Origin Certificate" },
                spki: csr.spki,
                notBefore,
                notAfter,
                dnsNames: hostnames,
            },
            root,
        );
        const record: OriginCaCertificateRecord = {
            id: serial.decimal,
            certificate: pem("CERTIFICATE", der),
            csr: String(news.csr),
            hostnames,
            request_type: requestType,
            requested_validity: Number(requestedValidity),
            expires_on: goTimeString(notAfter),
        };
        await account.update((a) => {
            a.origin_ca_certificates = { ...a.origin_ca_certificates, [record.id]: record };
        });
        return { id: record.id, outs: originCertOutputs(record, { csr: news.csr, requestedValidity }) };
    },

    // GET /certificates/<id>; a 404 drops the resource; csr and requested_validity stay as the state has them.
    async read(_ctx, id, state, inputs) {
        const r = account.read().origin_ca_certificates?.[id];
        return r ? { id, props: originCertOutputs(r, { csr: state.csr, requestedValidity: state.requestedValidity }), inputs } : undefined;
    },

    // Update is empty upstream: the plan becomes the state, nothing reaches the API.
    async update(_ctx, _id, olds, news) {
        return { ...olds, requestedValidity: news.requestedValidity ?? DEFAULT_VALIDITY };
    },

    // DELETE /certificates/<id> revokes it; the account keeps it, revoked.
    async delete(ctx, id) {
        const urlPath = `/certificates/${id}`;
        requireCredentials(ctx.config, "DELETE", urlPath);
        await account.update((a) => {
            const r = a.origin_ca_certificates?.[id];
            if (!r) throw apiError("DELETE", urlPath, 404, [{ code: 1003, message: "Certificate not found" }]);
            r.revoked_at ??= now();
        });
    },
};

serve(
    {
        name: "cloudflare",
        version: pinnedVersion("cloudflare"),
        secretConfig: ["apiToken", "apiKey", "apiUserServiceKey"],
        checkConfig(config, urn) {
            const token = config.apiToken;
            if (typeof token === "string" && !isUnknown(token) && !/^[0-9A-Za-z\-_]{40,80}$/.test(token)) {
                return [
                    configFailure(
                        "cloudflare",
                        urn,
                        "Invalid Attribute Value. Attribute api_token API tokens must only contain characters a-z, A-Z, 0-9, hyphens and underscores",
                        "apiToken",
                    ),
                ];
            }
            return [];
        },
        resources: {
            "cloudflare:index/dnsRecord:DnsRecord": dnsRecord,
            "cloudflare:index/zoneSetting:ZoneSetting": zoneSetting,
            "cloudflare:index/originCaCertificate:OriginCaCertificate": originCaCertificate,
        },
        functions: {
            "cloudflare:index/getZone:getZone": getZone,
            "cloudflare:index/getZoneSetting:getZoneSetting": getZoneSetting,
            "cloudflare:index/getIpRanges:getIpRanges": getIpRanges,
        },
    },
    process.argv.slice(2),
);
