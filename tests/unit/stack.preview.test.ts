import { CLOSURE_1, CLOSURE_2, evaluation, runProgram, valueOf } from "./program";

const COMMAND = "command:local:Command";

// In a preview of a new stack nothing exists yet: ids, addresses and generated keys are unknown.
// What the preview must still show is decided at program run time: the closure and the host facts.
describe("pulumi preview of a new stack", () => {
    let run: Awaited<ReturnType<typeof runProgram>>;
    beforeAll(async () => {
        run = await runProgram({ preview: true });
    });

    test("declares the same resources as an update, and reads the stack's own outputs (src/hostStatus.ts)", async () => {
        const update = await runProgram();
        const self = "pulumi:pulumi:StackReference::organization/blog/test";
        expect(run.resources.map((r) => `${r.type}::${r.name}`).sort()).toEqual(
            [...update.resources.map((r) => `${r.type}::${r.name}`), self].sort(),
        );
        expect(update.resources.map((r) => `${r.type}::${r.name}`)).not.toContain(self);
    });

    test("shows the closure the deploy will push, known before anything is created", () => {
        const deploy = run.all(COMMAND).find((c) => c.name.endsWith("switch"))!;
        expect(deploy.inputs.environment.SYSTEM_CLOSURE).toBe(CLOSURE_1);
    });

    test("leaves the server's addresses unknown instead of inventing them", async () => {
        expect(await valueOf(run.outputs.ipv4)).toBeUndefined();
        expect(await valueOf(run.outputs.url)).toBe("https://blog.example-site.org/");
    });
});

describe("pulumi preview of a pull request that changes the system", () => {
    test("shows the new closure in the deploy's SYSTEM_CLOSURE", async () => {
        const before = await runProgram({ preview: true, evaluation: evaluation({}, CLOSURE_1) });
        const after = await runProgram({ preview: true, evaluation: evaluation({}, CLOSURE_2) });
        const closure = (r: typeof before) =>
            r.all(COMMAND).find((c) => c.name.endsWith("switch"))!.inputs.environment.SYSTEM_CLOSURE;
        expect(closure(before)).toBe(CLOSURE_1);
        expect(closure(after)).toBe(CLOSURE_2);
    });
});

describe("pulumi preview never resolves what only exists after an update", () => {
    test("the host key, the server id and the system the host accepted stay unknown", async () => {
        const run = await runProgram({ preview: true });
        expect(await valueOf(run.outputs.hostKey)).toBeUndefined();
        expect(await valueOf(run.outputs.serverId)).toBeUndefined();
        // systemClosure is what the deploy reports, not what it is asked to deploy.
        expect(await valueOf(run.outputs.systemClosure)).toBeUndefined();
    });
});
