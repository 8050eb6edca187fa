import { hostSystemMessages, parseHostSystem, redeployCommand } from "../../src/hostStatus";

const A = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-blog";
const B = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-blog";
const C = "/nix/store/cccccccccccccccccccccccccccccccc-nixos-system-blog";
const URN = "urn:pulumi:prod::blog::blog:nixos:Deploy$command:local:Command::blog-switch";

describe("parseHostSystem: the host status script's answer, checked", () => {
    test("an answer of its form", () => {
        const line = JSON.stringify({ state: "ok", current: A, profile: A, generation: 4, runningGeneration: 4, last: { by: "alice", time: 17 } });
        expect(parseHostSystem(`noise\n${line}\n`)).toEqual({
            state: "ok",
            current: A,
            profile: A,
            generation: 4,
            runningGeneration: 4,
            lastBy: "alice",
            lastTime: 17,
        });
    });

    test("values of another form are dropped, not used", () => {
        const line = JSON.stringify({ state: "ok", current: "/etc/passwd", profile: `${A}\n`, generation: -1, last: { by: "a b; rm -rf /" } });
        expect(parseHostSystem(line)).toEqual({ state: "ok" });
    });

    test("no JSON, another state, a reason", () => {
        expect(parseHostSystem("garbage")).toEqual({ state: "unknown", reason: "the host status script printed no JSON" });
        expect(parseHostSystem('{"state":"fine"}').state).toBe("unknown");
        expect(parseHostSystem('{"state":"unknown","reason":"no route"}')).toEqual({ state: "unknown", reason: "no route" });
    });
});

describe("hostSystemMessages: what the preview says about the host", () => {
    test("the host runs and boots the stack's system: an info line, no warning", () => {
        const m = hostSystemMessages({ state: "ok", current: A, profile: A, runningGeneration: 3 }, A, A, URN);
        expect(m.warnings).toEqual([]);
        expect(m.info).toEqual(["host: runs and boots the stack's system (generation 3)."]);
    });

    test("a hand rollback and an unchanged plan: a warning naming the command that redeploys", () => {
        const m = hostSystemMessages({ state: "ok", current: B, profile: B, runningGeneration: 2 }, A, A, URN);
        expect(m.warnings).toHaveLength(1);
        expect(m.warnings[0]).toContain(`host: runs ${B} (generation 2), not the stack's last deployed system ${A}`);
        expect(m.warnings[0]).toContain(redeployCommand(URN));
        expect(redeployCommand(URN)).toBe(`pulumi up --replace '${URN}'`);
    });

    test("a hand rollback and a plan with a new system: the plan puts it back", () => {
        const m = hostSystemMessages({ state: "ok", current: B, profile: B }, A, C, URN);
        expect(m.warnings[0]).toContain(`This plan deploys ${C}, which puts the stack's system back.`);
        expect(m.warnings[0]).not.toContain("pulumi up --replace");
    });

    test("runs the stack's system but boots another: a warning", () => {
        const m = hostSystemMessages({ state: "ok", current: A, profile: B, generation: 5 }, A, A, URN);
        expect(m.warnings[0]).toContain("runs the stack's system, but boots another");
    });

    test("no SSH key here (a pull request's preview): info; unreachable: a warning, never a failure", () => {
        expect(hostSystemMessages({ state: "unknown", reason: "no SSH key here (...)" }, A, A, URN)).toEqual({
            info: ["host: whether it runs the stack's system could not be checked: no SSH key here (...)."],
            warnings: [],
        });
        expect(hostSystemMessages({ state: "unknown", reason: "the host did not answer within 30s" }, A, A, URN).warnings).toHaveLength(1);
    });
});
