// docs/operations.md, "List generations and roll back by hand": a rollback done on the host is
// invisible to the stack (the next preview shows no change and `up` deploys nothing), and
// `pulumi up --replace <the deploy's URN>` puts the stack's system back. Proved with the real
// engine on the existing-host path (no cloud token, dns none).
import { E2eStack, changes, keyLine, ok } from "./harness";

jest.setTimeout(600_000);

const s = new E2eStack("handrollback");
let machine: Record<string, string>;
const onMachine = (command: string) => s.onTarget(machine.TARGET_DIR, command);

beforeAll(async () => {
    await s.init({ "blog:host": "existing", "blog:dns": "none" }, {}, { providers: false, host: { platform: "generic" } });
    machine = s.startMachine();
    await s.setConfig({ "blog:hostIpv4": machine.TARGET_ADDR4, "blog:hostIpv6": machine.TARGET_ADDR6, "blog:hostKey": keyLine(machine.HOST_KEY) });
}, 600_000);

afterAll(() => s.cleanup(), 120_000);

test("a hand rollback is not seen by the next preview; up --replace of the deploy puts the stack's system back", async () => {
    ok(await s.up());
    const v1 = s.toplevel();
    s.setConfiguration("blog", { ...s.configuration(), closure: "v2" });
    ok(await s.up());
    const v2 = s.toplevel();
    expect(onMachine("readlink -e /run/current-system")).toBe(v2);

    // On the host, by hand: the previous generation, as the doc's commands do.
    onMachine("nix-env -p /nix/var/nix/profiles/system --rollback >/dev/null 2>&1 && /nix/var/nix/profiles/system/bin/switch-to-configuration switch");
    expect(onMachine("readlink -e /run/current-system")).toBe(v1);

    // The stack cannot see it.
    const p = ok(await s.preview());
    expect(changes(p)).toEqual([]);

    // The doc's remedy: replace the deploy command.
    const u = ok(await s.up({ replace: [await s.urn("blog-switch")] }));
    expect(changes(u).some((c) => /replace/.test(c) && c.endsWith(" blog-switch"))).toBe(true);
    expect(onMachine("readlink -e /run/current-system")).toBe(v2);
    expect((await s.outputs()).systemClosure).toBe(v2);
});
