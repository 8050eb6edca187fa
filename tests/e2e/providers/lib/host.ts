// The gRPC side of a stand-in provider plugin: the engine's ResourceProvider service, served with
// the message classes and service definition @pulumi/pulumi ships (proto/provider_grpc_pb).
//
// Why not `provider.main` from @pulumi/pulumi/provider (provider/server.js, the same in 3.276.0 as in
// 3.248.0; its `experimental` provider infers components only): it answers
// CheckConfig and DiffConfig with UNIMPLEMENTED, ignores Configure's arguments, never sets
// `supportsPreview`, and sends a Diff as changes/replaces/deleteBeforeReplace only (no diffs, no
// stables, no detailed diff). The real providers do all of that: the bridge
// (pulumi-terraform-bridge) and pulumi-go-provider (pulumi-command) check their configuration,
// preview creates and updates with computed values left unknown, and answer Diff with a detailed
// diff, from which the engine applies `replaceOnChanges` and renders `preview --diff`
// (pulumi/pulumi v3.248.0 pkg/resource/deploy/step_generator.go applyReplaceOnChanges). A diff
// without changed keys would make `replaceOnChanges: ["triggers[*]"]` a no-op, so the stand-ins
// could not behave like the real ones through `provider.main`.
import * as grpc from "@grpc/grpc-js";
import * as engrpc from "@pulumi/pulumi/proto/engine_grpc_pb";
import * as engproto from "@pulumi/pulumi/proto/engine_pb";
import * as plugproto from "@pulumi/pulumi/proto/plugin_pb";
import * as provrpc from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as provproto from "@pulumi/pulumi/proto/provider_pb";
import * as statusproto from "@pulumi/pulumi/proto/status_pb";
import * as anyproto from "google-protobuf/google/protobuf/any_pb";
import * as emptyproto from "google-protobuf/google/protobuf/empty_pb";
import * as structproto from "google-protobuf/google/protobuf/struct_pb";
import { DiffKind, Path, Props, applySecrets, clean, deepEqual, splitSecrets, topLevel } from "./values";

export type Severity = "debug" | "info" | "warning" | "error";

/** Writes to the engine's diagnostics, as a provider's host logger does (`Engine.Log`). */
export type Log = (severity: Severity, message: string, opts?: { urn?: string; ephemeral?: boolean }) => Promise<void>;

export interface CheckFailure {
    property?: string;
    reason: string;
}

export interface CheckResult {
    inputs: Props;
    failures?: CheckFailure[];
}

export interface DiffResult {
    changes: boolean;
    /** Property paths (as the engine prints them) and how each changes. */
    detailedDiff?: Record<string, DiffKind>;
    stables?: string[];
    deleteBeforeReplace?: boolean;
}

/** What every operation knows about the resource it works on. */
export interface Ctx {
    urn: string;
    /** The resource's name in the program (the URN's last part). */
    name: string;
    type: string;
    log: Log;
    /** The provider's configuration, secrets unwrapped. */
    config: Props;
}

/** A resource type's operations; values arrive with secrets unwrapped, unknowns as UNKNOWN. */
export interface ResourceType {
    /** Outputs the schema marks secret (`"secret": true`). */
    secretOutputs?: string[];
    check(ctx: Ctx, olds: Props, news: Props, randomSeed: Buffer): Promise<CheckResult> | CheckResult;
    diff(ctx: Ctx, id: string, oldInputs: Props, olds: Props, news: Props, ignoreChanges: string[]): Promise<DiffResult> | DiffResult;
    create(ctx: Ctx, news: Props, preview: boolean): Promise<{ id: string; outs: Props }>;
    /** Undefined when the resource is gone. */
    read(ctx: Ctx, id: string, state: Props, inputs: Props): Promise<{ id: string; props: Props; inputs: Props } | undefined>;
    update(ctx: Ctx, id: string, olds: Props, news: Props, oldInputs: Props, preview: boolean): Promise<Props>;
    delete(ctx: Ctx, id: string, state: Props): Promise<void>;
}

export type Invoke = (args: Props, ctx: { log: Log; config: Props }) => Promise<Props | { failures: CheckFailure[] }> | Props;

export interface ProviderSpec {
    /** Package name, the `<name>` of `pulumi-resource-<name>`. */
    name: string;
    version: string;
    /** Configuration keys the schema marks secret. */
    secretConfig?: string[];
    /** Problems with the configuration (CheckConfig); the keys are the package's, without the `name:` prefix. */
    checkConfig?(config: Props, urn: string): CheckFailure[];
    /** Runs at Configure; throwing fails the provider's configuration, as the real Configure can. */
    configure?(config: Props): void;
    resources: Record<string, ResourceType>;
    functions: Record<string, Invoke>;
}

/**
 * A failure after the resource came into being (the bridge's and the engine's "initialization
 * error"): the engine keeps the resource, with these properties, and reports the reasons.
 */
export class InitError extends Error {
    constructor(
        message: string,
        readonly id: string,
        readonly props: Props,
        readonly reasons: string[],
    ) {
        super(message);
    }
}

const toStruct = (v: Props): structproto.Struct => structproto.Struct.fromJavaScript(clean(v) as never);
const fromStruct = (s: structproto.Struct | undefined): Props => (s ? (s.toJavaScript() as Props) : {});

const plainOf = (s: structproto.Struct | undefined): { plain: Props; secrets: Path[] } => {
    const { plain, secrets } = splitSecrets(fromStruct(s));
    return { plain: plain as Props, secrets };
};

function urnParts(urn: string): { name: string; type: string } {
    const parts = urn.split("::");
    const qualified = parts[2] ?? "";
    return { name: parts.slice(3).join("::"), type: qualified.split("$").pop() ?? "" };
}

function failureList(failures: CheckFailure[]): provproto.CheckFailure[] {
    return failures.map((f) => {
        const m = new provproto.CheckFailure();
        m.setProperty(f.property ?? "");
        m.setReason(f.reason);
        return m;
    });
}

const KIND: Record<DiffKind, provproto.PropertyDiff.Kind> = {
    add: provproto.PropertyDiff.Kind.ADD,
    "add-replace": provproto.PropertyDiff.Kind.ADD_REPLACE,
    delete: provproto.PropertyDiff.Kind.DELETE,
    "delete-replace": provproto.PropertyDiff.Kind.DELETE_REPLACE,
    update: provproto.PropertyDiff.Kind.UPDATE,
    "update-replace": provproto.PropertyDiff.Kind.UPDATE_REPLACE,
};

/** A DiffResponse as pulumi-go-provider (provider.go DiffResponse.rpc) and the bridge send it. */
function diffResponse(d: DiffResult): provproto.DiffResponse {
    const resp = new provproto.DiffResponse();
    const detailed = d.detailedDiff ?? {};
    const diffs = new Set<string>();
    const replaces = new Set<string>();
    const map = resp.getDetaileddiffMap();
    for (const [path, kind] of Object.entries(detailed)) {
        const pd = new provproto.PropertyDiff();
        pd.setKind(KIND[kind]);
        pd.setInputdiff(false);
        map.set(path, pd);
        diffs.add(topLevel(path));
        if (kind.endsWith("-replace")) replaces.add(topLevel(path));
    }
    resp.setChanges(d.changes ? provproto.DiffResponse.DiffChanges.DIFF_SOME : provproto.DiffResponse.DiffChanges.DIFF_NONE);
    resp.setDiffsList([...diffs]);
    resp.setReplacesList([...replaces]);
    resp.setStablesList(d.stables ?? []);
    resp.setDeletebeforereplace(d.deleteBeforeReplace ?? false);
    resp.setHasdetaileddiff(true);
    return resp;
}

type Callback<T> = (err: grpc.ServiceError | null | Partial<grpc.StatusObject>, value?: T | null, trailer?: grpc.Metadata) => void;

function grpcError(e: unknown): Partial<grpc.StatusObject> {
    const message = e instanceof Error ? e.message : String(e);
    const metadata = new grpc.Metadata();
    if (e instanceof InitError) {
        // Packed as provider/server.js and the Go plugin host pack it: google.rpc.Status with a
        // pulumirpc.ErrorResourceInitFailed detail, in the grpc-status-details-bin trailer.
        const detail = new provproto.ErrorResourceInitFailed();
        detail.setId(e.id);
        detail.setProperties(toStruct(e.props));
        detail.setReasonsList(e.reasons);
        const any = new anyproto.Any();
        any.pack(detail.serializeBinary(), "pulumirpc.ErrorResourceInitFailed");
        const status = new statusproto.Status();
        status.setCode(grpc.status.UNKNOWN);
        status.setMessage(message);
        status.addDetails(any);
        metadata.add("grpc-status-details-bin", Buffer.from(status.serializeBinary()));
    }
    return { code: grpc.status.UNKNOWN, details: message, metadata };
}

/** Parses the plugin's arguments (flags such as `-v=9`, `--logtostderr`, then the engine's address). */
function engineAddress(argv: string[]): string | undefined {
    return argv.filter((a) => !a.startsWith("-")).pop();
}

export function serve(spec: ProviderSpec, argv: string[]): void {
    let engineAddr = engineAddress(argv);
    let engine: engrpc.EngineClient | undefined;
    let config: Props = {};

    const log: Log = async (severity, message, opts = {}) => {
        if (!engineAddr) return;
        engine ??= new engrpc.EngineClient(engineAddr, grpc.credentials.createInsecure());
        const req = new engproto.LogRequest();
        const sev = { debug: engproto.LogSeverity.DEBUG, info: engproto.LogSeverity.INFO, warning: engproto.LogSeverity.WARNING, error: engproto.LogSeverity.ERROR }[severity];
        req.setSeverity(sev);
        req.setMessage(message);
        req.setUrn(opts.urn ?? "");
        req.setEphemeral(opts.ephemeral ?? false);
        await new Promise<void>((resolve) => engine!.log(req, () => resolve()));
    };

    const ctxFor = (urn: string): Ctx => ({ urn, ...urnParts(urn), log, config });
    const resourceOf = (urn: string): ResourceType => {
        const { type } = urnParts(urn);
        const r = spec.resources[type];
        if (!r) throw new Error(`unknown resource type '${type}' (the stand-in ${spec.name} provider models ${Object.keys(spec.resources).join(", ")})`);
        return r;
    };
    const outSecrets = (r: ResourceType, inputSecrets: Path[]): Path[] => [...inputSecrets, ...(r.secretOutputs ?? []).map((k) => [k])];

    // Every handler: run, answer, and turn a thrown error into the gRPC error the engine reports.
    function handle<Req, Res>(fn: (req: Req) => Promise<Res>) {
        return (call: grpc.ServerUnaryCall<Req, Res>, callback: Callback<Res>) => {
            fn(call.request).then(
                (res) => callback(null, res),
                (e) => {
                    const err = grpcError(e);
                    callback(err, null, err.metadata);
                },
            );
        };
    }

    const impl: Partial<provrpc.IResourceProviderServer> = {
        getPluginInfo: handle(async () => new plugproto.PluginInfo().setVersion(spec.version)),
        getSchema: handle(async () => new provproto.GetSchemaResponse().setSchema(JSON.stringify({ name: spec.name, version: spec.version }))),
        attach: handle(async (req: plugproto.PluginAttach) => {
            engineAddr = req.getAddress();
            engine = undefined;
            return new emptyproto.Empty();
        }),
        cancel: handle(async () => new emptyproto.Empty()),

        checkConfig: handle(async (req: provproto.CheckRequest) => {
            const { plain, secrets } = plainOf(req.getNews());
            const failures = spec.checkConfig?.(plain, req.getUrn()) ?? [];
            const resp = new provproto.CheckResponse();
            if (failures.length > 0) return resp.setFailuresList(failureList(failures));
            const marked = [...secrets, ...(spec.secretConfig ?? []).filter((k) => k in plain).map((k) => [k])];
            return resp.setInputs(toStruct(applySecrets(plain, marked) as Props));
        }),
        diffConfig: handle(async (req: provproto.DiffRequest) => {
            const olds = plainOf(req.getOldInputs() ?? req.getOlds()).plain;
            const news = plainOf(req.getNews()).plain;
            delete olds.version;
            delete news.version;
            const changed = [...new Set([...Object.keys(olds), ...Object.keys(news)])].filter((k) => !deepEqual(olds[k], news[k]));
            const detailedDiff = Object.fromEntries(changed.map((k) => [k, "update" as DiffKind]));
            return diffResponse({ changes: changed.length > 0, detailedDiff });
        }),
        configure: handle(async (req: provproto.ConfigureRequest) => {
            const args = req.getArgs();
            if (args) config = plainOf(args).plain;
            else {
                config = {};
                req.getVariablesMap().forEach((v, k) => {
                    config[k.replace(/^[^:]+:config:/, "")] = v;
                });
            }
            spec.configure?.(config);
            const resp = new provproto.ConfigureResponse();
            resp.setAcceptsecrets(true);
            resp.setAcceptresources(false);
            resp.setAcceptoutputs(false);
            resp.setSupportspreview(true);
            return resp;
        }),

        check: handle(async (req: provproto.CheckRequest) => {
            const r = resourceOf(req.getUrn());
            const olds = plainOf(req.getOlds()).plain;
            const { plain, secrets } = plainOf(req.getNews());
            const seed = Buffer.from(req.getRandomseed_asU8());
            const result = await r.check(ctxFor(req.getUrn()), olds, plain, seed);
            const resp = new provproto.CheckResponse();
            resp.setInputs(toStruct(applySecrets(result.inputs, secrets) as Props));
            if (result.failures?.length) resp.setFailuresList(failureList(result.failures));
            return resp;
        }),
        diff: handle(async (req: provproto.DiffRequest) => {
            const r = resourceOf(req.getUrn());
            const result = await r.diff(
                ctxFor(req.getUrn()),
                req.getId(),
                plainOf(req.getOldInputs()).plain,
                plainOf(req.getOlds()).plain,
                plainOf(req.getNews()).plain,
                req.getIgnorechangesList(),
            );
            return diffResponse(result);
        }),
        create: handle(async (req: provproto.CreateRequest) => {
            const r = resourceOf(req.getUrn());
            const { plain, secrets } = plainOf(req.getProperties());
            try {
                const { id, outs } = await r.create(ctxFor(req.getUrn()), plain, req.getPreview());
                const resp = new provproto.CreateResponse();
                resp.setId(id);
                resp.setProperties(toStruct(applySecrets(outs, outSecrets(r, secrets)) as Props));
                return resp;
            } catch (e) {
                if (e instanceof InitError) {
                    throw new InitError(e.message, e.id, applySecrets(e.props, outSecrets(r, secrets)) as Props, e.reasons);
                }
                throw e;
            }
        }),
        read: handle(async (req: provproto.ReadRequest) => {
            const r = resourceOf(req.getUrn());
            const state = plainOf(req.getProperties());
            const inputs = plainOf(req.getInputs());
            const found = await r.read(ctxFor(req.getUrn()), req.getId(), state.plain, inputs.plain);
            const resp = new provproto.ReadResponse();
            if (!found) return resp.setId("");
            resp.setId(found.id);
            resp.setProperties(toStruct(applySecrets(found.props, outSecrets(r, state.secrets)) as Props));
            resp.setInputs(toStruct(applySecrets(found.inputs, inputs.secrets) as Props));
            return resp;
        }),
        update: handle(async (req: provproto.UpdateRequest) => {
            const r = resourceOf(req.getUrn());
            const { plain, secrets } = plainOf(req.getNews());
            try {
                const outs = await r.update(
                    ctxFor(req.getUrn()),
                    req.getId(),
                    plainOf(req.getOlds()).plain,
                    plain,
                    plainOf(req.getOldInputs()).plain,
                    req.getPreview(),
                );
                return new provproto.UpdateResponse().setProperties(toStruct(applySecrets(outs, outSecrets(r, secrets)) as Props));
            } catch (e) {
                if (e instanceof InitError) {
                    const old = plainOf(req.getOlds()).secrets;
                    throw new InitError(e.message, e.id, applySecrets(e.props, outSecrets(r, old)) as Props, e.reasons);
                }
                throw e;
            }
        }),
        delete: handle(async (req: provproto.DeleteRequest) => {
            const r = resourceOf(req.getUrn());
            await r.delete(ctxFor(req.getUrn()), req.getId(), plainOf(req.getProperties()).plain);
            return new emptyproto.Empty();
        }),
        invoke: handle(async (req: provproto.InvokeRequest) => {
            const fn = spec.functions[req.getTok()];
            if (!fn) throw new Error(`unknown function ${req.getTok()} (the stand-in ${spec.name} provider models ${Object.keys(spec.functions).join(", ")})`);
            const result = await fn(plainOf(req.getArgs()).plain, { log, config });
            const resp = new provproto.InvokeResponse();
            if ("failures" in result && Array.isArray(result.failures)) {
                return resp.setFailuresList(failureList(result.failures as CheckFailure[]));
            }
            return resp.setReturn(toStruct(result as Props));
        }),
    };

    const server = new grpc.Server({ "grpc.max_receive_message_length": 400 * 1024 * 1024 });
    server.addService(provrpc.ResourceProviderService, impl as provrpc.IResourceProviderServer);
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
        if (err) {
            process.stderr.write(`${spec.name} stand-in: cannot listen: ${err.message}\n`);
            process.exit(1);
        }
        // The engine reads the port from the first line of stdout.
        process.stdout.write(`${port}\n`);
    });
}
