// Nothing goes live unchecked, with the real engine: every path that puts a system on a host
// (the first install, a failed deploy, a replacement by location and by `--replace`) checks the
// site's health before the stack calls it done; the records move to a host only after that
// check; the output systemClosure names what the host accepted. A failed check fails `up` with
// the deploy's own exit code and message, and a replaced server stays (pending delete in the
// state) until an `up` with a good system finishes the move.
import { execFileSync } from "child_process";
import * as path from "path";
import { DOMAIN, E2eStack, OpResult, changes, finishedAt, ok, startedAt } from "./harness";

// Each operation runs the real CLI, which compiles the program and starts the providers.
jest.setTimeout(600_000);

const s = new E2eStack("gate");

beforeAll(() => s.init(), 600_000);

afterAll(() => s.cleanup(), 120_000);

/** The site as a visitor's browser gets it from `address` (the test CA trusted): "<status> <body>". */
function site(address: string): string {
    try {
        const out = execFileSync(
            "curl",
            ["--silent", "--show-error", "--max-time", "10", "--cacert", path.join(s.dir, "ca.pem"), "--resolve", `${DOMAIN}:443:${address}`,
                "--write-out", " %{http_code}", `https://${DOMAIN}/`],
            { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 20_000 },
        ).trim();
        const code = out.slice(-3);
        return `${code} ${out.slice(0, -3).trim()}`;
    } catch (e) {
        return `unreachable: ${(e as Error).message.split("\n")[0]}`;
    }
}

/** The addresses the Cloudflare records of the domain hold. */
function records(): string[] {
    const all = Object.values((s.cloud("cloudflare").records ?? {}) as Record<string, { name: string; content: string }>);
    return all.filter((r) => r.name === DOMAIN).map((r) => r.content).sort();
}

/** The Hetzner servers the state holds, with the engine's pending-delete mark. */
function stateServers(): Array<{ id: string; delete: boolean }> {
    return (s.exportWithSecrets().deployment.resources ?? [])
        .filter((r) => r.type === "hcloud:index/server:Server")
        .map((r) => ({ id: String(r.id), delete: r.delete === true }));
}

function currentSystem(ipv4: string): string {
    return s.onTarget(s.targetAt(ipv4), "readlink -e /run/current-system || true");
}

/** The deploy's error as the engine reports it (pulumi-command: "exit status N: running ..."). */
function deployFailure(r: OpResult): string {
    expect(r.error).toBeDefined();
    const line = r.log.split("\n").find((l) => /exit status \d+: running "bash scripts\/deploy.sh"/.test(l));
    return line ?? "";
}

test("a first up whose system fails its health check fails with the deploy's exit 5 and message, and creates no records", async () => {
    s.setConfiguration("blog", { ...s.configuration(), healthy: false });
    const r = await s.up();
    expect(deployFailure(r)).toContain("exit status 5");
    expect(r.log).toMatch(/already runs and boots \/nix\/store\/\S+ \(nothing was changed, so there is nothing to roll back to\), but it is not healthy: health check: https:\/\/blog\.e2e-site\.test\/ did not pass/);
    // The install ran and the host runs the system, but nobody is pointed at it.
    expect(s.installs()).toHaveLength(1);
    expect(records()).toEqual([]);
    expect(changes(r)).not.toContain("create blog-a");
    // No output claims a system the stack never accepted.
    expect((await s.outputs()).systemClosure).toBeUndefined();
});

test("the next up with a good system deploys it, then points the records at the host, then checks it again", async () => {
    s.setConfiguration("blog", { ...s.configuration(), closure: "v2", healthy: true });
    const r = ok(await s.up());
    expect(finishedAt(r, "blog-switch")).toBeGreaterThanOrEqual(0);
    for (const record of ["blog-a", "blog-aaaa"]) {
        expect(finishedAt(r, "blog-switch")).toBeLessThan(startedAt(r, record));
        expect(finishedAt(r, record)).toBeLessThan(startedAt(r, "blog-check"));
    }
    const out = await s.outputs();
    expect(out.systemClosure).toBe(s.toplevel());
    expect(records()).toEqual([out.ipv4, out.ipv6].sort());
    expect(site(out.ipv4 as string)).toMatch(/^200 blog ok v2-/);
});

test("a deploy that fails and rolls back leaves systemClosure on the system the host still runs", async () => {
    const before = await s.outputs();
    s.setConfiguration("blog", { ...s.configuration(), closure: "v3", healthy: false });
    const r = await s.up();
    expect(deployFailure(r)).toContain("exit status 3");
    const after = await s.outputs();
    expect(after.systemClosure).toBe(before.systemClosure);
    expect(currentSystem(after.ipv4 as string)).toBe(before.systemClosure);
    // The failed update is no state: the next preview proposes the deploy again.
    expect(changes(ok(await s.preview()))).toContain("update blog-switch");
});

test("a new location with a system that fails its check: up fails before the old server goes; the records stay on it, and it still answers", async () => {
    const before = await s.outputs();
    await s.setConfig({ "blog:location": "fsn1" });
    s.setConfiguration("blog", { ...s.configuration(), closure: "v4", healthy: false });
    const r = await s.up();
    expect(deployFailure(r)).toContain("exit status 5");
    expect(r.log).toContain("but it is not healthy");
    // The engine stopped before it deleted anything: the old server is in the state, marked for
    // deletion, next to its replacement; it runs, keeps the records, and serves the site.
    const servers = stateServers();
    expect(servers).toHaveLength(2);
    expect(servers.filter((x) => x.delete).map((x) => x.id)).toEqual([before.serverId]);
    expect(s.targetDirs().map((d) => s.targetEnv(d).TARGET_ADDR4)).toContain(before.ipv4);
    expect(records()).toEqual([before.ipv4, before.ipv6].sort());
    expect(site(before.ipv4 as string)).toMatch(/^200 blog ok v2-/);
    expect(currentSystem(before.ipv4 as string)).toBe(before.systemClosure);
    expect((await s.outputs()).systemClosure).toBe(before.systemClosure);
});

test("the next up with a good system finishes the move: deploy, records, check, and only then the old server is deleted", async () => {
    const before = await s.outputs();
    const oldIpv4 = before.ipv4 as string;
    s.setConfiguration("blog", { ...s.configuration(), closure: "v5", healthy: true });
    const r = ok(await s.up());
    const deletedOld = r.events.findIndex(
        (e) => e.resOutputsEvent?.metadata.op === "delete-replaced" && e.resOutputsEvent.metadata.urn.endsWith("::blog-server"),
    );
    expect(deletedOld).toBeGreaterThan(finishedAt(r, "blog-check"));
    expect(finishedAt(r, "blog-a")).toBeLessThan(finishedAt(r, "blog-check"));
    const after = await s.outputs();
    expect(after.serverId).not.toBe(before.serverId);
    expect(stateServers()).toEqual([{ id: after.serverId, delete: false }]);
    expect(records()).toEqual([after.ipv4, after.ipv6].sort());
    expect(site(after.ipv4 as string)).toMatch(/^200 blog ok v5-/);
    expect(s.targetDirs().map((d) => s.targetEnv(d).TARGET_ADDR4)).not.toContain(oldIpv4);
    expect(after.systemClosure).toBe(s.toplevel());
});

test("pulumi up --replace of the server with a system that fails its check keeps the old server and its records", async () => {
    const before = await s.outputs();
    s.setConfiguration("blog", { ...s.configuration(), closure: "v6", healthy: false });
    const urn = (s.exportWithSecrets().deployment.resources ?? []).find((x) => x.type === "hcloud:index/server:Server")!.urn as string;
    const r = await s.up({ replace: [urn] });
    expect(deployFailure(r)).toMatch(/exit status [35]/);
    expect(stateServers().filter((x) => x.delete).map((x) => x.id)).toEqual([before.serverId]);
    expect(records()).toEqual([before.ipv4, before.ipv6].sort());
    expect(site(before.ipv4 as string)).toMatch(/^200 blog ok v5-/);
    expect((await s.outputs()).systemClosure).toBe(before.systemClosure);
});
