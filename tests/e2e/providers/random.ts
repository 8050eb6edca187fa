// Stand-in for pulumi-resource-random (@pulumi/random 4.21.2): `random:index/randomPassword:RandomPassword`,
// the one resource this project uses. Modelled on hashicorp/terraform-provider-random v3.8.1 (which
// pulumi/pulumi-random bridges with the plugin framework):
//   internal/provider/resource_password.go   the schema (length Required with AtLeast(1) and
//                                            AtLeastSumOf(min_*); upper, lower, numeric, special
//                                            default true; min_* default 0; override_special; every
//                                            input RequiresReplace, keepers when its values are not
//                                            null; result and bcrypt_hash Computed, Sensitive,
//                                            UseStateForUnknown; id "none"), Create (CreateString,
//                                            then bcrypt of the result at DefaultCost), no-op Read
//                                            and Delete, Update copies the plan
//   internal/random/string.go                CreateString: the minimums drawn first from each set,
//                                            the rest from the union, then shuffled; crypto/rand
// and @pulumi/random's SDK (randomPassword.js): additionalSecretOutputs ["bcryptHash", "result"].
// The bcrypt hash is computed by libxcrypt through Debian's python3 (crypt, method $2b$, cost 10 =
// bcrypt.DefaultCost), the password on its stdin.
import { execFileSync } from "child_process";
import { randomInt } from "crypto";
import { resourceFailure } from "./lib/bridge";
import { Ctx, ResourceType, serve } from "./lib/host";
import { pinnedVersion } from "./lib/repo";
import { DiffKind, Props, UNKNOWN, bool, deepEqual, num, obj, str } from "./lib/values";

const NUMERIC = "0123456789";
const LOWER = "abcdefghijklmnopqrstuvwxyz";
const UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SPECIAL = "!@#$%&*()-_=+[]{}<>:?";
const REPLACE_ON = ["length", "upper", "lower", "numeric", "number", "special", "minNumeric", "minUpper", "minLower", "minSpecial", "overrideSpecial"];
const SECRET_OUTPUTS = ["bcryptHash", "result"];

/** The plan: inputs with the schema's defaults (numeric and number mirror each other). */
function planned(news: Props): Props {
    const numeric = bool(news.numeric) ?? bool(news.number) ?? true;
    return {
        ...news,
        length: news.length,
        upper: bool(news.upper) ?? true,
        lower: bool(news.lower) ?? true,
        numeric,
        number: numeric,
        special: bool(news.special) ?? true,
        minNumeric: num(news.minNumeric) ?? 0,
        minUpper: num(news.minUpper) ?? 0,
        minLower: num(news.minLower) ?? 0,
        minSpecial: num(news.minSpecial) ?? 0,
    };
}

/** internal/random/string.go CreateString. */
function createString(p: Props): string {
    const special = str(p.overrideSpecial) || SPECIAL;
    let chars = "";
    if (p.upper) chars += UPPER;
    if (p.lower) chars += LOWER;
    if (p.numeric) chars += NUMERIC;
    if (p.special) chars += special;
    if (chars === "") throw new Error("the character set specified is empty");
    const draw = (set: string, n: number) => Array.from({ length: n }, () => set[randomInt(set.length)]);
    const result = [
        ...draw(NUMERIC, num(p.minNumeric) ?? 0),
        ...draw(LOWER, num(p.minLower) ?? 0),
        ...draw(UPPER, num(p.minUpper) ?? 0),
        ...draw(special, num(p.minSpecial) ?? 0),
    ];
    result.push(...draw(chars, (num(p.length) ?? 0) - result.length));
    // A random order, as the sort by random bytes upstream gives.
    for (let i = result.length - 1; i > 0; i--) {
        const j = randomInt(i + 1);
        [result[i], result[j]] = [result[j], result[i]];
    }
    return result.join("");
}

/** bcrypt.GenerateFromPassword(first 72 bytes, DefaultCost), by libxcrypt. */
function bcryptHash(password: string): string {
    const script = "import crypt, sys; pw = sys.stdin.buffer.read()[:72].decode('utf-8', 'ignore'); print(crypt.crypt(pw, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10)))";
    return execFileSync("/usr/bin/python3", ["-W", "ignore", "-c", script], { input: password, encoding: "utf8" }).trim();
}

const randomPassword: ResourceType = {
    secretOutputs: SECRET_OUTPUTS,

    check(ctx: Ctx, _olds: Props, news: Props) {
        const failures = [];
        const length = num(news.length);
        if (news.length === undefined) {
            failures.push(resourceFailure("Missing required argument. The argument \"length\" is required, but no definition was found.", ctx.name, "length"));
        } else if (length !== undefined) {
            const p = planned(news);
            const sum = ["minUpper", "minLower", "minNumeric", "minSpecial"].reduce((a, k) => a + (num(p[k]) ?? 0), 0);
            if (length < 1) failures.push(resourceFailure(`Invalid Attribute Value. Attribute length value must be at least 1, got: ${length}`, ctx.name, "length"));
            else if (length < sum) {
                failures.push(
                    resourceFailure(`Invalid Attribute Value. Attribute length value must be at least sum of min_upper + min_lower + min_numeric + min_special (${sum}), got: ${length}`, ctx.name, "length"),
                );
            }
        }
        return { inputs: news, failures };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const plan = planned(news);
        const detailedDiff: Record<string, DiffKind> = {};
        for (const k of REPLACE_ON) {
            if (plan[k] === undefined && olds[k] === undefined) continue;
            if (plan[k] === UNKNOWN || !deepEqual(olds[k] ?? null, plan[k] ?? null)) detailedDiff[k] = "update-replace";
        }
        // keepers: RequiresReplaceIfValuesNotNull.
        const oldKeepers = obj(olds.keepers) ?? {};
        const newKeepers = obj(plan.keepers) ?? {};
        if (!deepEqual(oldKeepers, newKeepers)) detailedDiff.keepers = "update-replace";
        return { changes: Object.keys(detailedDiff).length > 0, detailedDiff };
    },

    async create(_ctx, news, preview) {
        const plan = planned(news);
        if (preview) return { id: "", outs: { ...plan, result: UNKNOWN, bcryptHash: UNKNOWN } };
        const result = createString(plan);
        return { id: "none", outs: { ...plan, result, bcryptHash: bcryptHash(result) } };
    },

    // Read is a no-op upstream: the state holds it all.
    async read(_ctx, id, state, inputs) {
        return { id, props: state, inputs };
    },

    // Update copies the plan into the state (only keepers' null values can change in place).
    async update(_ctx, _id, olds, news) {
        return { ...olds, ...planned(news), result: olds.result, bcryptHash: olds.bcryptHash };
    },

    async delete() {
        // Nothing to delete: the password lives in the state only.
    },
};

serve(
    {
        name: "random",
        version: pinnedVersion("random"),
        resources: { "random:index/randomPassword:RandomPassword": randomPassword },
        functions: {},
    },
    process.argv.slice(2),
);
