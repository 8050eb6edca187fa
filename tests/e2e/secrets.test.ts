// Host secrets with the real engine: from `pulumi config set --secret --path`, through the
// deploy's environment, to root-only files on the host; what a change alone does; what the
// state file and the log hold.
import * as crypto from "crypto";
import { E2eStack, OpResult, changes, ok, steps } from "./harness";

// Each operation runs the real CLI, which compiles the program and starts the providers.
jest.setTimeout(600_000);

const s = new E2eStack("secrets");
const FIRST = `first-${crypto.randomBytes(12).toString("hex")}`;
const SECOND = `second-${crypto.randomBytes(12).toString("hex")}\nwith a second line\n`;
const ops: Array<{ name: string; result: OpResult; state: string }> = [];

async function record(name: string, run: Promise<OpResult>): Promise<OpResult> {
    const result = await run;
    ops.push({ name, result, state: s.stateText() });
    return result;
}

/** `mode owner` and content of a secret file on the (one) server, or "absent". */
function onHost(name: string): string {
    const [dir] = s.targetDirs();
    return s.onTarget(dir, `f=/var/lib/blog-secrets/${name}; if [ -e "$f" ]; then stat -c '%a %U' "$f"; cat "$f"; else echo absent; fi`);
}

beforeAll(async () => {
    await s.init();
    // The configuration's services read apiKey (blog.secrets in the NixOS configuration).
    s.setConfiguration("blog", { ...s.configuration(), secrets: ["apiKey"] });
}, 600_000);

afterAll(() => s.cleanup(), 120_000);

test("a secret the configuration reads but the stack lacks fails preview, naming the key and how to set it", async () => {
    const p = await s.preview();
    expect(p.error).toBeDefined();
    expect(p.log).toContain("blog:hostSecrets.apiKey: got nothing; expected a value");
    expect(p.log).toContain("pulumi config set --secret --path 'hostSecrets.apiKey' <value>");
});

test("up delivers it to /var/lib/blog-secrets, root-only, before the system is activated", async () => {
    await s.setSecretAtPath("blog:hostSecrets.apiKey", FIRST);
    ok(await record("up", s.up()));
    expect(onHost("apiKey")).toBe(`400 root\n${FIRST}`);
    const [dir] = s.targetDirs();
    // The set is a directory the deploy swaps in atomically (/var/lib/blog-secrets links to it).
    expect(s.onTarget(dir, "stat -L -c '%a %U' /var/lib/blog-secrets")).toBe("700 root");
});

test("a new value alone is an in-place update of the deploy that delivers it; the closure stays", async () => {
    const closure = (await s.outputs()).systemClosure;
    await s.setSecretAtPath("blog:hostSecrets.apiKey", SECOND);
    const p = ok(await record("preview (new value)", s.preview()));
    expect(changes(p)).toEqual(["update blog-switch"]);
    const step = steps(p).find((x) => x.name === "blog-switch")!;
    expect(step.diffs).toEqual(["environment"]);
    expect(Object.keys(step.detailedDiff ?? {})).toEqual(["environment.HOST_SECRET_apiKey"]);

    ok(await record("up (new value)", s.up()));
    expect(onHost("apiKey")).toBe(`400 root\n${SECOND.replace(/\n$/, "")}`);
    expect((await s.outputs()).systemClosure).toBe(closure);
});

test("up again with nothing changed is no change at all", async () => {
    const r = ok(await record("up (unchanged)", s.up()));
    expect(changes(r)).toEqual([]);
});

test("a secret removed from the config and the configuration is removed from the host", async () => {
    s.setConfiguration("blog", { ...s.configuration(), secrets: [] });
    await s.removeConfig("blog:hostSecrets.apiKey", { path: true });
    ok(await record("up (removed)", s.up()));
    expect(onHost("apiKey")).toBe("absent");
});

test("no secret value is in the clear in the state file or the log of any step; the state holds it encrypted", () => {
    const needles = [FIRST, SECOND.split("\n")[0]];
    for (const op of ops) {
        for (const needle of needles) {
            expect([op.name, op.result.log.includes(needle), op.state.includes(needle)]).toEqual([op.name, false, false]);
        }
    }
    // After the second up the state held the value as a secret (ciphertext), under its own key.
    const state = JSON.parse(ops.find((o) => o.name === "up (new value)")!.state);
    const deploy = state.checkpoint.latest.resources.find((r: any) => r.urn.endsWith("::blog-switch"));
    const env = deploy.inputs.environment;
    expect(env.HOST_SECRETS).toBe("apiKey");
    expect(env.HOST_SECRET_apiKey).toMatchObject({ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270" });
    expect(typeof env.TARGET_HOST).toBe("string");
});
