// What `pulumi preview` and `pulumi up` themselves cost (issue 22), with the real engine: a
// no-change preview and up of the example stack beside the same operations on a program that
// declares nothing (the engine's floor: the same CLI, runtime, backend and passphrase), and the
// program's own share, from the marks it writes with BLOG_TIMINGS (src/timings.ts): loading
// (Node's start, the TypeScript compilation, the SDKs), the one Nix evaluation, the preflight
// look-ups (Hetzner's catalog and the DNS zone, from the stand-in providers). It PRINTS the
// figures; it asserts only on behaviour (the operations change nothing, every mark is written),
// never on time: speed belongs to benchmarks that print figures.
import * as fs from "fs";
import * as path from "path";
import { E2eStack, OpResult, changes, lockedPulumiVersion, ok } from "./harness";

jest.setTimeout(900_000);

const ROUNDS = 3;
const s = new E2eStack("cost");
const empty = new E2eStack("cost-empty");
const timingsFile = path.join(s.dir, "timings");

interface Sample {
    ms: number;
    marks: Record<string, number>;
}

/** The marks the program wrote during one operation (and forgets them). */
function takeMarks(): Record<string, number> {
    const marks: Record<string, number> = {};
    if (!fs.existsSync(timingsFile)) return marks;
    for (const line of fs.readFileSync(timingsFile, "utf8").split("\n")) {
        const m = /^([a-z-]+) (\d+)$/.exec(line);
        // One program run per operation; a mark written twice keeps the last.
        if (m) marks[m[1]] = Number(m[2]);
    }
    fs.rmSync(timingsFile);
    return marks;
}

async function measure(run: () => Promise<OpResult>): Promise<{ sample: Sample; result: OpResult }> {
    takeMarks();
    const start = performance.now();
    const result = ok(await run());
    const ms = performance.now() - start;
    return { sample: { ms, marks: takeMarks() }, result };
}

function median(values: number[]): number {
    const v = [...values].sort((a, b) => a - b);
    const mid = Math.floor(v.length / 2);
    return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

const samples: Record<string, Sample[]> = {};

async function rounds(key: string, stack: E2eStack, op: "preview" | "up"): Promise<void> {
    samples[key] = [];
    for (let i = 0; i < ROUNDS; i++) {
        // As a user runs them: the CLI's default output, no engine log.
        const { sample, result } = await measure(() => stack[op]({ defaultVerbosity: true }));
        expect(changes(result)).toEqual([]);
        samples[key].push(sample);
    }
}

beforeAll(async () => {
    await s.init({}, {}, { env: { BLOG_TIMINGS: timingsFile } });
    ok(await s.up());
    await empty.init({}, {}, { providers: false, emptyProgram: true });
    ok(await empty.up());
}, 900_000);

afterAll(() => {
    s.cleanup();
    empty.cleanup();
}, 120_000);

test("a no-change preview and up of the example stack, beside the engine's floor (figures printed)", async () => {
    await rounds("stack preview", s, "preview");
    await rounds("empty preview", empty, "preview");
    await rounds("stack up", s, "up");
    await rounds("empty up", empty, "up");

    // Every run of the program wrote its marks.
    for (const key of ["stack preview", "stack up"]) {
        for (const sample of samples[key]) {
            expect(Object.keys(sample.marks).sort()).toEqual(["nix-eval", "preflight", "program-exit", "program-loaded"]);
        }
    }

    const ms = (key: string) => median(samples[key].map((x) => x.ms));
    const mark = (key: string, name: string) => median(samples[key].map((x) => x.marks[name]));
    const row = (a: string, b: string, c: string, d: string, e: string) =>
        `${a.padEnd(22)}${b.padStart(14)}${c.padStart(15)}${d.padStart(17)}${e.padStart(10)}`;
    const lines = [
        `pulumi ${lockedPulumiVersion()} (real engine), no change, wall time in ms, median of ${ROUNDS}:`,
        row("operation", "example stack", "empty program", "program's share", "share"),
    ];
    for (const op of ["preview", "up"]) {
        const a = ms(`stack ${op}`);
        const b = ms(`empty ${op}`);
        lines.push(row(op, a.toFixed(0), b.toFixed(0), (a - b).toFixed(0), `${(((a - b) / a) * 100).toFixed(0)}%`));
    }
    lines.push("the program's own marks (BLOG_TIMINGS), median ms:");
    lines.push(row("mark", "preview", "up", "", ""));
    for (const name of ["program-loaded", "nix-eval", "preflight", "program-exit"]) {
        lines.push(row(name, mark("stack preview", name).toFixed(0), mark("stack up", name).toFixed(0), "", ""));
    }
    lines.push(
        "program-loaded: Node's start, compiling and loading the program and its SDKs; nix-eval: the one nix eval of the flake;",
        "preflight: from its start until the providers' answers (catalog, zone) resolved; program-exit: the program's whole run.",
    );
    // The figures are the point: printed, not asserted.
    process.stdout.write(`\n${lines.join("\n")}\n\n`);
});
