// Property values as the engine sends them over gRPC (google.protobuf.Struct, with Pulumi's
// sentinels for unknowns and secrets), and the property diff the engine itself computes
// (pulumi/pulumi v3.248.0 sdk/go/common/resource/properties_diff.go, properties_path.go; the
// detailed diff of sdk/go/common/resource/plugin/provider.go NewDetailedDiffFromObjectDiff).

/** An unknown value (`resource.Computed` on the wire): inputs during preview. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
/** The special-signature key of a wrapped value, and the signature that marks a secret. */
const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

export type Props = Record<string, unknown>;
export type PathElement = string | number;
export type Path = PathElement[];

export function isUnknown(v: unknown): boolean {
    return v === UNKNOWN;
}

export function containsUnknown(v: unknown): boolean {
    if (isUnknown(v)) return true;
    if (Array.isArray(v)) return v.some(containsUnknown);
    if (isObject(v)) return Object.values(v).some(containsUnknown);
    return false;
}

export function isObject(v: unknown): v is Props {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isSecretWrapper(v: unknown): v is { value: unknown } {
    return isObject(v) && v[SIG_KEY] === SECRET_SIG;
}

export function makeSecret(v: unknown): unknown {
    return { [SIG_KEY]: SECRET_SIG, value: v };
}

/** A value without its secret wrappers, and the paths where they were. */
export function splitSecrets(v: unknown, at: Path = [], found: Path[] = []): { plain: unknown; secrets: Path[] } {
    if (isSecretWrapper(v)) {
        found.push(at);
        return { plain: splitSecrets(v.value, at, found).plain, secrets: found };
    }
    if (Array.isArray(v)) return { plain: v.map((e, i) => splitSecrets(e, [...at, i], found).plain), secrets: found };
    if (isObject(v)) {
        const out: Props = {};
        for (const [k, e] of Object.entries(v)) out[k] = splitSecrets(e, [...at, k], found).plain;
        return { plain: out, secrets: found };
    }
    return { plain: v, secrets: found };
}

/**
 * Wraps, in a copy of `v`, the values at `paths` as secrets. Shorter paths win: a value inside an
 * already-secret value is not wrapped again.
 */
export function applySecrets(v: unknown, paths: Path[]): unknown {
    const sorted = [...paths].sort((a, b) => a.length - b.length);
    const kept: Path[] = [];
    for (const p of sorted) if (!kept.some((k) => k.every((e, i) => p[i] === e))) kept.push(p);
    const wrap = (value: unknown, at: Path): unknown => {
        if (kept.some((p) => p.length === at.length && p.every((e, i) => at[i] === e))) return makeSecret(value);
        if (!kept.some((p) => p.length > at.length && at.every((e, i) => p[i] === e))) return value;
        if (Array.isArray(value)) return value.map((e, i) => wrap(e, [...at, i]));
        if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, e]) => [k, wrap(e, [...at, k])]));
        return value;
    };
    return wrap(v, []);
}

/** Drops `undefined` members (google.protobuf.Struct has no such value). */
export function clean<T>(v: T): T {
    if (Array.isArray(v)) return v.map((e) => (e === undefined ? null : clean(e))) as T;
    if (isObject(v)) {
        const out: Props = {};
        for (const [k, e] of Object.entries(v)) if (e !== undefined) out[k] = clean(e);
        return out as T;
    }
    return v;
}

/** Whether a property has a value at all, as `PropertyValue.HasValue` (null and absent do not). */
export function hasValue(v: unknown): boolean {
    return v !== null && v !== undefined;
}

export function deepEqual(a: unknown, b: unknown): boolean {
    if (a === b) return true;
    if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((e, i) => deepEqual(e, b[i]));
    if (isObject(a) && isObject(b)) {
        const ka = Object.keys(a).filter((k) => hasValue(a[k]));
        const kb = Object.keys(b).filter((k) => hasValue(b[k]));
        return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
    }
    return false;
}

/** A property path as the engine prints it (`PropertyPath.String`): `a.b[0]["k.x"]`. */
export function formatPath(path: Path): string {
    let out = "";
    path.forEach((k, i) => {
        if (typeof k === "number") out += `[${k}]`;
        else if (/^[A-Za-z0-9_]*$/.test(k)) out += i === 0 ? k : `.${k}`;
        else out += `["${k.replace(/"/g, '\\"')}"]`;
    });
    return out;
}

export type DiffKind = "add" | "add-replace" | "delete" | "delete-replace" | "update" | "update-replace";

export function asReplace(kind: DiffKind): DiffKind {
    return kind.endsWith("-replace") ? kind : (`${kind}-replace` as DiffKind);
}

/**
 * The engine's object diff flattened into a detailed diff: nested objects and arrays are walked,
 * every changed leaf is one path. An unknown new value is a change (it never equals anything).
 */
export function objectDiff(olds: Props, news: Props, at: Path = [], acc: Record<string, DiffKind> = {}): Record<string, DiffKind> {
    for (const [k, o] of Object.entries(olds)) {
        const n = news[k];
        if (!(k in news) || !hasValue(n)) {
            if (hasValue(o)) acc[formatPath([...at, k])] = "delete";
            continue;
        }
        if (!hasValue(o)) acc[formatPath([...at, k])] = "add";
        else valueDiff(o, n, [...at, k], acc);
    }
    for (const [k, n] of Object.entries(news)) {
        if (!(k in olds) && hasValue(n)) acc[formatPath([...at, k])] = "add";
    }
    return acc;
}

function valueDiff(o: unknown, n: unknown, at: Path, acc: Record<string, DiffKind>): void {
    if (Array.isArray(o) && Array.isArray(n)) {
        for (let i = 0; i < Math.max(o.length, n.length); i++) {
            if (i >= o.length) acc[formatPath([...at, i])] = "add";
            else if (i >= n.length) acc[formatPath([...at, i])] = "delete";
            else valueDiff(o[i], n[i], [...at, i], acc);
        }
        return;
    }
    if (isObject(o) && isObject(n)) {
        objectDiff(o, n, at, acc);
        return;
    }
    if (isUnknown(n) || !deepEqual(o, n)) acc[formatPath(at)] = "update";
}

/** The top-level property a detailed-diff path starts with. */
export function topLevel(path: string): string {
    const m = /^([A-Za-z0-9_]+)|^\["((?:[^"\\]|\\.)*)"\]/.exec(path);
    if (!m) return path;
    return m[1] ?? m[2].replace(/\\"/g, '"');
}

// Readers for values whose shape the schema fixes; unknowns and absent values read as undefined.
export function str(v: unknown): string | undefined {
    return typeof v === "string" && !isUnknown(v) ? v : undefined;
}
export function num(v: unknown): number | undefined {
    return typeof v === "number" ? v : undefined;
}
export function bool(v: unknown): boolean | undefined {
    return typeof v === "boolean" ? v : undefined;
}
export function arr(v: unknown): unknown[] | undefined {
    return Array.isArray(v) ? v : undefined;
}
export function obj(v: unknown): Props | undefined {
    return isObject(v) ? v : undefined;
}
