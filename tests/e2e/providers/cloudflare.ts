// Stand-in for pulumi-resource-cloudflare (@pulumi/cloudflare 6.22.1): the `getZone` invoke (v6
// shape) and `cloudflare:index/dnsRecord:DnsRecord`, over a fake Cloudflare account kept in
// $BLOG_E2E_CLOUD_DIR/cloudflare.json (zones seeded from $BLOG_E2E_CLOUDFLARE_ZONES).
//
// Modelled on cloudflare/terraform-provider-cloudflare v5.22.0 (the newest release at hand;
// pulumi/pulumi-cloudflare master at 52f065c5 bridges v5.19.1, and the two agree on all of this):
//   internal/provider.go                          api_token: ^[0-9A-Za-z\-_]{40,80}$ (configuration only;
//                                                 CLOUDFLARE_API_TOKEN is read as is)
//   internal/customvalidator/sensitive_regex.go   the validation message
//   internal/services/dns_record/schema.go        zone_id and type RequiresReplace; proxied defaults
//                                                 to false; computed created_on, modified_on,
//                                                 proxiable, meta, comment_modified_on, tags...
//   internal/services/dns_record/resource.go      Create refuses proxied with a TTL other than 1;
//                                                 state is what the API answers (the full name)
//   internal/services/dns_record/custom.go (v5.19.1 resource.go ModifyPlan)   a name that names the
//                                                 same record as the state's FQDN is no change;
//                                                 normalizeSettings (settings only for CNAME)
//   internal/services/zone/data_source.go         getZone by zone_id or filter ("failed to find
//                                                 exactly one result"); errors as "failed to make
//                                                 http request: <cloudflare-go error>"
// API answers: code 7003/7000 for an unknown zone id (reported widely, e.g. cloudflare/cloudflare-go#118,
// timothymiller/cloudflare-ddns#152), 81058 "An identical record already exists.", 9005 "Content for
// A record must be a valid IPv4 address.".
import { randomBytes } from "crypto";
import { isIPv4, isIPv6 } from "net";
import { configFailure, resourceFailure } from "./lib/bridge";
import { CheckFailure, Invoke, ResourceType, serve } from "./lib/host";
import { pinnedVersion } from "./lib/repo";
import { Store } from "./lib/store";
import { DiffKind, Props, UNKNOWN, arr, bool, deepEqual, isUnknown, num, obj, str } from "./lib/values";

const API = "https://api.cloudflare.com/client/v4";

interface ZoneRecord {
    id: string;
    name: string;
    status: string;
    account: { id: string; name: string };
    name_servers: string[];
    created_on: string;
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
}

const account = new Store<Account>("cloudflare.json", () => ({ zones: {}, records: {} }));

const hex32 = () => randomBytes(16).toString("hex");
const now = () => new Date().toISOString().replace(/Z$/, "000Z");

/** Zones from $BLOG_E2E_CLOUDFLARE_ZONES ({"<id>": "<name>"}), added to the account on first sight. */
async function zones(): Promise<Record<string, ZoneRecord>> {
    const fromEnv = JSON.parse(process.env.BLOG_E2E_CLOUDFLARE_ZONES || "{}") as Record<string, string>;
    const known = account.read().zones;
    if (Object.keys(fromEnv).every((id) => known[id])) return known;
    return account.update((a) => {
        for (const [id, name] of Object.entries(fromEnv)) {
            a.zones[id] ??= {
                id,
                name,
                status: "active",
                account: { id: "e2e0000000000000000000000000acc0", name: "blog e2e" },
                name_servers: ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                created_on: now(),
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

/** No credentials at all: the API's answer to a request without any. */
function requireCredentials(config: Props, method: string, urlPath: string): void {
    if (str(config.apiToken) || process.env.CLOUDFLARE_API_TOKEN || str(config.apiKey) || process.env.CLOUDFLARE_API_KEY) return;
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
        if (proxied && ttl !== 1) {
            throw new Error(
                "ttl must be set to 1 when `proxied` is true: When a DNS record is marked as `proxied` the TTL must be 1 as Cloudflare will control the TTL internally.",
            );
        }
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
        resources: { "cloudflare:index/dnsRecord:DnsRecord": dnsRecord },
        functions: { "cloudflare:index/getZone:getZone": getZone },
    },
    process.argv.slice(2),
);
