// A machine the stack does not create (`host: existing`), with no DNS provider (`dns: none`), and
// no Hetzner or Cloudflare token at all: the same deploys as on a Hetzner server, every
// connection checked against the host key from the config, and a destroy that leaves the machine
// as it is.
import { E2eStack, changes, keyLine, newKeyPair, ok } from "./harness";

// Each operation runs the real CLI, which compiles the program and starts the providers.
jest.setTimeout(600_000);

const s = new E2eStack("existing");
let machine: Record<string, string>;



const onMachine = (command: string) => s.onTarget(machine.TARGET_DIR, command);
const hostKey = () => keyLine(machine.HOST_KEY);

beforeAll(async () => {
    await s.init({ "blog:host": "existing", "blog:dns": "none" }, {}, { providers: false, host: { platform: "generic" } });
    machine = s.startMachine();
    await s.setConfig({ "blog:hostIpv4": machine.TARGET_ADDR4, "blog:hostIpv6": machine.TARGET_ADDR6, "blog:hostKey": hostKey() });
}, 600_000);

afterAll(() => s.cleanup(), 120_000);

test("preview: only the deploy, no Hetzner or Cloudflare resource, no token needed, nothing run", async () => {
    const logins = s.sshLogins();
    const r = ok(await s.preview());
    expect(changes(r).sort()).toEqual(["create blog", "create blog-switch"]);
    expect(s.sshLogins()).toBe(logins);
    expect(onMachine("readlink -e /run/current-system || echo none")).toBe("none");
});

test("up deploys the system to the machine, checking its configured host key; the outputs list the records to create", async () => {
    ok(await s.up());
    expect(onMachine("readlink -e /run/current-system")).toBe(s.toplevel());
    const out = await s.outputs();
    expect(out).toMatchObject({
        ipv4: machine.TARGET_ADDR4,
        ipv6: machine.TARGET_ADDR6,
        serverId: null,
        hostKey: hostKey(),
        dnsRecords: [
            { type: "A", name: "blog.e2e-site.test", content: machine.TARGET_ADDR4, managedBy: "you" },
            { type: "AAAA", name: "blog.e2e-site.test", content: machine.TARGET_ADDR6, managedBy: "you" },
        ],
    });
    expect(s.installs()).toEqual([]);
});

test("a new system is an update of the deploy only, and reaches the machine", async () => {
    s.setConfiguration("blog", { ...s.configuration(), closure: "v2" });
    const p = ok(await s.preview());
    expect(changes(p)).toEqual(["update blog-switch"]);
    ok(await s.up());
    expect(onMachine("readlink -e /run/current-system")).toBe(s.toplevel());
});

test("a machine that presents another host key than the configured one is refused before anything is copied", async () => {
    const running = onMachine("readlink -e /run/current-system");
    await s.setConfig({ "blog:hostKey": newKeyPair(s.dir, "other-host").publicKey });
    s.setConfiguration("blog", { ...s.configuration(), closure: "v3" });
    const r = await s.up();
    expect(r.error).toBeDefined();
    expect(r.log).toContain("host key mismatch");
    expect(onMachine(`nix-store --check-validity ${s.toplevel()} 2>/dev/null && echo copied || echo absent`)).toBe("absent");
    expect(onMachine("readlink -e /run/current-system")).toBe(running);
    await s.setConfig({ "blog:hostKey": hostKey() });
    s.setConfiguration("blog", { ...s.configuration(), closure: "v2" });
});

test("destroy removes the stack's records of the machine and leaves the machine running what it runs", async () => {
    const running = onMachine("readlink -e /run/current-system");
    const logins = s.sshLogins();
    ok(await s.destroy());
    expect(s.sshLogins()).toBe(logins);
    expect(s.targetDirs()).toContain(machine.TARGET_DIR);
    expect(onMachine("readlink -e /run/current-system")).toBe(running);
    const exported = s.exportWithSecrets();
    expect((exported.deployment.resources ?? []).filter((r) => !String(r.type).startsWith("pulumi:"))).toEqual([]);
});

describe("an existing machine the stack installs (install: true)", () => {
    const t = new E2eStack("installed");
    let box: Record<string, string>;

    beforeAll(async () => {
        await t.init(
            { "blog:host": "existing", "blog:dns": "none" },
            {},
            { providers: false, host: { platform: "generic", disk: "/dev/disk/by-id/nvme-e2e-test-disk" } },
        );
        box = t.startMachine();
        // The key it presents now, read out of band (the machine's own files): the install pins it.
        await t.setConfig({
            "blog:hostIpv4": box.TARGET_ADDR4,
            "blog:hostIpv6": box.TARGET_ADDR6,
            "blog:install": "true",
            "blog:installHostKey": box.HOST_KEY,
        });
    }, 600_000);

    afterAll(() => t.cleanup(), 120_000);

    test("without the confirmation, preview fails and names the key and the address", async () => {
        const r = await t.preview();
        expect(r.error).toBeDefined();
        expect(r.log).toContain(`blog:wipeDiskOf: got nothing; expected "${box.TARGET_ADDR4}", the machine's address again`);
    });

    test("confirmed: preview warns that the disk is erased; up installs it once with the stack's host key and deploys", async () => {
        await t.setConfig({ "blog:wipeDiskOf": box.TARGET_ADDR4 });
        const p = ok(await t.preview());
        expect(p.log).toContain(`nixos-anywhere ERASES THE DISK of ${box.TARGET_ADDR4}`);
        expect(changes(p)).toEqual(expect.arrayContaining(["create blog-nixos-anywhere", "create blog-host-key", "create blog-switch"]));

        ok(await t.up());
        expect(t.installs()).toHaveLength(1);
        const out = await t.outputs();
        expect(out.hostKey).not.toBe(keyLine(box.HOST_KEY));
        expect(t.presentedHostKey(box.TARGET_DIR)).toBe(out.hostKey);
        expect(t.onTarget(box.TARGET_DIR, "readlink -e /run/current-system")).toBe(t.toplevel());

        t.setConfiguration("blog", { ...t.configuration(), closure: "v2" });
        const again = ok(await t.up());
        expect(changes(again)).toEqual(["update blog-switch"]);
        expect(t.installs()).toHaveLength(1);
    });
});
