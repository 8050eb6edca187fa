// `npm run status` (scripts/status.sh) against a stack the real engine deployed: a clean stack is
// clean; a hand rollback on the host is reported by the status AND warned about in the next
// preview, whose printed command puts the stack's system back; a DNS record deleted in the
// cloud is drift; a failed unit is reported.
import * as fs from "fs";
import * as path from "path";
import { E2eStack, changes, keyLine, ok } from "./harness";

jest.setTimeout(900_000);

const s = new E2eStack("status");
let target: string;

interface Finding {
    check: string;
    level: "ok" | "info" | "problem" | "unknown";
    message: string;
    do?: string;
}

function status(): { code: number | null; findings: Finding[]; text: string } {
    const r = s.script("status.sh", ["--json", "--stack", "status"]);
    let findings: Finding[] = [];
    try {
        findings = JSON.parse(r.stdout).findings;
    } catch {
        throw new Error(`status.sh printed no JSON (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
    }
    return { code: r.status, findings, text: `${r.stdout}\n${r.stderr}` };
}

const problems = (f: Finding[]) => f.filter((x) => x.level === "problem");
const current = () => s.onTarget(target, "readlink -e /run/current-system");

// A machine the stack does not create (no install, so no reboot by the installer's stand-in),
// with its records at Cloudflare (the stand-in), deployed twice: the host has a generation to
// roll back to by hand.
beforeAll(async () => {
    await s.init({ "blog:host": "existing", "blog:dns": "cloudflare" }, {}, { host: { platform: "generic" }, env: { GITHUB_ACTOR: "e2e-actor" } });
    const machine = s.startMachine();
    target = machine.TARGET_DIR;
    await s.setConfig({ "blog:hostIpv4": machine.TARGET_ADDR4, "blog:hostIpv6": machine.TARGET_ADDR6, "blog:hostKey": keyLine(machine.HOST_KEY) });
    ok(await s.up());
    s.setConfiguration("blog", { ...s.configuration(), closure: "v2" });
    ok(await s.up());
}, 1_200_000);

afterAll(() => s.cleanup(), 120_000);

test("a clean stack reports clean (exit 0): no drift, the stack's system with its generation and deployer, no failed unit", () => {
    const r = status();
    expect(problems(r.findings)).toEqual([]);
    expect(r.code).toBe(0);
    const system = r.findings.find((f) => f.check === "system")!;
    expect(system.level).toBe("ok");
    expect(system.message).toMatch(/runs and boots the stack's system, generation \d+ since .* deployed by e2e-actor/);
    expect(r.findings.find((f) => f.check === "cloud")).toMatchObject({ level: "ok" });
    expect(r.findings.find((f) => f.check === "units")).toMatchObject({ level: "ok" });
    // The human form says so too.
    const human = s.script("status.sh", ["--stack", "status"]);
    expect(human.status).toBe(0);
    expect(human.stdout).toContain("Clean: nothing needs a person.");
});

test("a hand rollback is reported by status and warned about in the next preview; the command printed puts the stack's system back", async () => {
    const deployed = (await s.outputs()).systemClosure as string;
    expect(current()).toBe(deployed);
    // As `nixos-rebuild switch --rollback` does: the previous generation becomes the profile and runs.
    s.onTarget(
        target,
        "nix-env -p /nix/var/nix/profiles/system --rollback >/dev/null 2>&1 && /nix/var/nix/profiles/system/bin/switch-to-configuration switch >/dev/null 2>&1; true",
    );
    expect(current()).not.toBe(deployed);

    const r = status();
    expect(r.code).toBe(3);
    const system = problems(r.findings).find((f) => f.check === "system")!;
    expect(system.message).toContain(`not the stack's system ${deployed}`);
    const urn = await s.urn("blog-switch");
    expect(system.do).toBe(`pulumi up --replace '${urn}' --stack status`);

    const p = ok(await s.preview());
    expect(changes(p)).toEqual([]);
    const warning = p.log.split("\n").find((l) => l.includes("not the stack's last deployed system"));
    expect(warning).toBeDefined();
    const printed = /pulumi up --replace '([^']+)'/.exec(warning!);
    expect(printed?.[1]).toBe(urn);

    // The command the warning prints, as printed.
    ok(await s.up({ replace: [printed![1]] }));
    expect(current()).toBe(deployed);
    expect(s.onTarget(target, "readlink -e /nix/var/nix/profiles/system")).toBe(deployed);
    expect(status().code).toBe(0);
    const again = ok(await s.preview());
    expect(again.log).not.toContain("not the stack's last deployed system");
});

test("a DNS record deleted in the cloud is reported as drift", () => {
    const file = path.join(s.cloudDir, "cloudflare.json");
    const saved = fs.readFileSync(file, "utf8");
    const cloud = JSON.parse(saved);
    const [id] = Object.entries(cloud.records as Record<string, { type: string }>).find(([, r]) => r.type === "A")!;
    delete cloud.records[id];
    fs.writeFileSync(file, JSON.stringify(cloud, null, 2));
    try {
        const r = status();
        expect(r.code).toBe(3);
        const cloudFinding = problems(r.findings).find((f) => f.check === "cloud")!;
        expect(cloudFinding.message).toMatch(/blog-a \(cloudflare:index\/dnsRecord:DnsRecord\): gone from the cloud/);
        expect(cloudFinding.do).toBe("pulumi up --refresh --stack status");
    } finally {
        fs.writeFileSync(file, saved);
    }
    expect(status().code).toBe(0);
});

test("a failed unit is reported, with the command that shows its log", () => {
    s.onTarget(target, "systemd-run --quiet --unit=blog-e2e-broken.service /bin/sh -c 'exit 3'; sleep 2");
    try {
        const r = status();
        expect(r.code).toBe(3);
        const unit = problems(r.findings).find((f) => f.check === "units")!;
        expect(unit.message).toBe("the unit blog-e2e-broken.service has failed");
        expect(unit.do).toMatch(/journalctl -b -u blog-e2e-broken\.service$/);
    } finally {
        s.onTarget(target, "systemctl reset-failed blog-e2e-broken.service || true");
    }
    expect(status().code).toBe(0);
});
