// Stand-in for pulumi-resource-command (@pulumi/command 1.2.1 = pulumi/pulumi-command tag v1.2.1):
// `command:local:Command` and the `command:local:run` invoke. Modelled on, at that tag:
//   provider/pkg/provider/local/commandController.go   Create/Update/Delete
//   provider/pkg/provider/local/commandOutputs.go      run(): interpreter, dir, env, stdin, logging,
//                                                      the error text, the trimmed outputs
//   provider/pkg/provider/local/base.go, logging.go    inputs, outputs, logging modes
//   provider/pkg/provider/common/inputs.go             `triggers` is provider:"replaceOnChanges"
//   sdk/nodejs/local/command.ts                        the SDK adds replaceOnChanges ["triggers[*]"]
// and on pulumi/pulumi-go-provider v1.3.0 (what it is built with) infer/resource.go: Diff (the
// detailed diff of old inputs against new ones, a replace for a changed `triggers` key), Create's
// ID (resource.NewUniqueHex(name, 8, 0)), and preview (outputs that do not mirror an input are
// unknown in a create, and in an update whose inputs changed).
import { spawn } from "child_process";
import { randomBytes } from "crypto";
import * as fs from "fs";
import { Ctx, Log, ResourceType, serve } from "./lib/host";
import { pinnedVersion } from "./lib/repo";
import { DiffKind, Props, UNKNOWN, arr, asReplace, bool, objectDiff, obj, str } from "./lib/values";

// pulumi/pulumi-command v1.2.1 provider/pkg/provider/common/inputs.go: `triggers` is the one input
// tagged provider:"replaceOnChanges".
const REPLACE_ON_CHANGES = ["triggers"];

/** strconv.Quote, as the error's `%q` prints the command. */
function goQuote(s: string): string {
    const named: Record<string, string> = { "\x07": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v" };
    let out = '"';
    for (const ch of s) {
        const cp = ch.codePointAt(0) ?? 0;
        if (ch === '"' || ch === "\\") out += `\\${ch}`;
        else if (named[ch]) out += named[ch];
        else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, "0")}`;
        else if ((cp >= 0x80 && cp < 0xa0) || cp === 0xad) out += `\\u${cp.toString(16).padStart(4, "0")}`;
        else out += ch;
    }
    return `${out}"`;
}

/** How Go's exec reports a process that did not exit with 0 (os.ProcessState.String). */
function exitText(code: number | null, signal: NodeJS.Signals | null): string {
    const names: Partial<Record<NodeJS.Signals, string>> = {
        SIGKILL: "killed",
        SIGTERM: "terminated",
        SIGINT: "interrupt",
        SIGHUP: "hangup",
        SIGQUIT: "quit",
        SIGABRT: "aborted",
        SIGSEGV: "segmentation fault",
        SIGPIPE: "broken pipe",
    };
    if (signal) return `signal: ${names[signal] ?? signal}`;
    return `exit status ${code}`;
}

interface RunInputs {
    stdin?: string;
    logging?: string;
    interpreter?: string[];
    dir?: string;
    environment?: Record<string, string>;
    addPreviousOutputInEnv?: boolean;
}

function runInputs(p: Props): RunInputs {
    return {
        stdin: str(p.stdin),
        logging: str(p.logging),
        interpreter: arr(p.interpreter)?.map((e) => String(e)),
        dir: str(p.dir),
        environment: obj(p.environment) as Record<string, string> | undefined,
        addPreviousOutputInEnv: bool(p.addPreviousOutputInEnv),
    };
}

/**
 * Runs one command as commandOutputs.go run() does: `/bin/sh -c <command>` unless `interpreter`,
 * in `dir` or the plugin's working directory (the engine starts plugins in the program's
 * directory), with the plugin's environment plus `environment` (plus the previous outputs as
 * PULUMI_COMMAND_STDOUT/STDERR unless addPreviousOutputInEnv is false), `stdin` when not empty.
 * Output lines go to the engine as ephemeral info messages on the resource, as `logging` says.
 * Returns the outputs with one trailing newline trimmed; throws the provider's error text.
 */
async function run(command: string, inputs: RunInputs, previous: { stdout: string; stderr: string }, log: Log, urn?: string): Promise<{ stdout: string; stderr: string }> {
    const argv = inputs.interpreter && inputs.interpreter.length > 0 ? [...inputs.interpreter, command] : ["/bin/sh", "-c", command];
    const env: NodeJS.ProcessEnv = { ...process.env, ...(inputs.environment ?? {}) };
    if (inputs.addPreviousOutputInEnv === undefined || inputs.addPreviousOutputInEnv) {
        if (previous.stdout !== "") env.PULUMI_COMMAND_STDOUT = previous.stdout;
        if (previous.stderr !== "") env.PULUMI_COMMAND_STDERR = previous.stderr;
    }
    const cwd = inputs.dir ?? process.cwd();
    const logStdout = inputs.logging === undefined || inputs.logging === "stdout" || inputs.logging === "stdoutAndStderr";
    const logStderr = inputs.logging === undefined || inputs.logging === "stderr" || inputs.logging === "stdoutAndStderr";

    if (!fs.existsSync(cwd)) throw new Error(`chdir ${cwd}: no such file or directory: running ${goQuote(command)}:\n`);

    let stdout = "";
    let stderr = "";
    let combined = "";
    // Lines are sent as they complete (util.LogOutput scans the logged streams line by line), in order.
    let logged = "";
    let sent: Promise<void> = Promise.resolve();
    const send = (line: string) => {
        sent = sent.then(() => log("info", line, { urn, ephemeral: true }));
    };
    const toLog = (chunk: string) => {
        logged += chunk;
        const lines = logged.split("\n");
        logged = lines.pop() ?? "";
        lines.forEach(send);
    };
    const result = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
        const child = spawn(argv[0], argv.slice(1), {
            cwd,
            env,
            stdio: [inputs.stdin ? "pipe" : "ignore", "pipe", "pipe"],
        });
        child.stdout!.setEncoding("utf8").on("data", (d: string) => {
            stdout += d;
            combined += d;
            if (logStdout) toLog(d);
        });
        child.stderr!.setEncoding("utf8").on("data", (d: string) => {
            stderr += d;
            combined += d;
            if (logStderr) toLog(d);
        });
        if (inputs.stdin) {
            child.stdin!.on("error", () => undefined);
            child.stdin!.end(inputs.stdin);
        }
        child.on("error", (error) => resolve({ code: null, signal: null, error }));
        child.on("close", (code, signal) => resolve({ code, signal }));
    });
    if (logged !== "") send(logged);
    await sent;

    if (result.error) {
        const e = result.error as NodeJS.ErrnoException;
        const what = e.code === "ENOENT" ? (argv[0].includes("/") ? `fork/exec ${argv[0]}: no such file or directory` : `exec: "${argv[0]}": executable file not found in $PATH`) : e.message;
        throw new Error(`${what}: running ${goQuote(command)}:\n${combined}`);
    }
    if (result.code !== 0) throw new Error(`${exitText(result.code, result.signal)}: running ${goQuote(command)}:\n${combined}`);
    return { stdout: stdout.replace(/\n$/, ""), stderr: stderr.replace(/\n$/, "") };
}

/** The inputs, as infer echoes them into the state (version and internal keys dropped). */
function inputsOf(p: Props): Props {
    return Object.fromEntries(Object.entries(p).filter(([k]) => k !== "version" && !k.startsWith("__")));
}

const commandResource: ResourceType = {
    check(_ctx: Ctx, _olds, news) {
        const failures = [];
        for (const k of ["assetPaths", "archivePaths"]) {
            if (news[k] !== undefined) failures.push({ property: k, reason: `${k} is not modelled by the stand-in command provider` });
        }
        return { inputs: inputsOf(news), failures };
    },

    diff(_ctx, _id, oldInputs, olds, news, ignoreChanges) {
        const next = inputsOf(news);
        for (const p of ignoreChanges) if (p in olds) next[p] = olds[p];
        const detailed = objectDiff(inputsOf(oldInputs), next);
        // infer/resource.go diff: a key the schema marks replaceOnChanges turns into a replace;
        // the keys are paths, so only a change of `triggers` as a whole matches, and a changed
        // element ("triggers[0]") is left to the SDK's replaceOnChanges ["triggers[*]"].
        const detailedDiff: Record<string, DiffKind> = {};
        for (const [path, kind] of Object.entries(detailed)) detailedDiff[path] = REPLACE_ON_CHANGES.includes(path) ? asReplace(kind) : kind;
        return { changes: Object.keys(detailedDiff).length > 0, detailedDiff };
    },

    async create(ctx, news, preview) {
        const id = `${ctx.name}${randomBytes(4).toString("hex")}`;
        const state: Props = { ...inputsOf(news), stdout: "", stderr: "" };
        if (preview) return { id, outs: { ...state, stdout: UNKNOWN, stderr: UNKNOWN } };
        const create = str(news.create);
        if (create === undefined) return { id, outs: state };
        const out = await run(create, runInputs(news), { stdout: "", stderr: "" }, ctx.log, ctx.urn);
        return { id, outs: { ...state, ...out } };
    },

    async read(_ctx, id, state, inputs) {
        return { id, props: state, inputs };
    },

    async update(ctx, _id, olds, news, _oldInputs, preview) {
        const previous = { stdout: str(olds.stdout) ?? "", stderr: str(olds.stderr) ?? "" };
        const state: Props = { ...inputsOf(news), ...previous };
        // An update only happens when inputs changed, so in a preview the outputs are unknown.
        if (preview) return { ...state, stdout: UNKNOWN, stderr: UNKNOWN };
        const cmd = str(news.update) ?? str(news.create);
        if (cmd === undefined) return state;
        return { ...state, ...(await run(cmd, runInputs(news), previous, ctx.log, ctx.urn)) };
    },

    async delete(ctx, _id, state) {
        const del = str(state.delete);
        if (del === undefined) return;
        await run(del, runInputs(state), { stdout: str(state.stdout) ?? "", stderr: str(state.stderr) ?? "" }, ctx.log, ctx.urn);
    },
};

serve(
    {
        name: "command",
        version: pinnedVersion("command"),
        resources: { "command:local:Command": commandResource },
        functions: {
            // local/run.go: runs at every program execution, preview included.
            "command:local:run": async (args, { log }) => {
                const command = str(args.command) ?? "";
                const out = await run(command, runInputs(args), { stdout: "", stderr: "" }, log);
                return { ...inputsOf(args), ...out };
            },
        },
    },
    process.argv.slice(2),
);
