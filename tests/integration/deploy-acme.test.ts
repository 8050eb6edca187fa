// deploy.sh's health gate on a host that already runs the system (nothing to change: a first
// install, a reinstall, a replacement), and its HEALTH_ACME modes, against a real target that
// serves HTTPS with a certificate like NixOS's ACME placeholder: a leaf for the domain signed by
// a minica CA of the host's own (nixpkgs nixos/modules/security/acme/default.nix:
// acme-<cert>.service copies that CA to /var/lib/acme/<cert>/chain.pem, and
// /var/lib/acme/<cert>/acme-success marks the first certificate an order got).
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Target, buildClosure, currentSystem, leftoverControlMasters, runScript, scriptEnv, startTarget, stopTarget } from "./harness/target";

/** The deploy's SSH control masters left running for this target (other suites may run deploys of their own at the same time). */
function ourControlMasters(): number[] {
    return leftoverControlMasters().filter((pid) => {
        try {
            return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(`@${t().addr4}`);
        } catch {
            return false;
        }
    });
}

jest.setTimeout(180_000);

const DOMAIN = "gate.blog.test";
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "blog-acme-"));
let target: Target | undefined;
let closure: string;
let placeholderCa: string;

function t(): Target {
    if (!target) throw new Error("target not started");
    return target;
}

function openssl(args: string[]): void {
    execFileSync("openssl", args, { stdio: "ignore", timeout: 30_000 });
}

/** The minica CA and the placeholder leaf for DOMAIN, as minica makes them (CN "minica root ca <hex>"). */
function makePlaceholder(): { ca: string; cert: string; key: string } {
    const f = (n: string) => path.join(tmp, n);
    openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f("ca.key"),
        "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=minica root ca 5a1b2c"]);
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f("leaf.key"),
        "-out", f("leaf.csr"), "-subj", `/CN=${DOMAIN}`]);
    fs.writeFileSync(f("leaf.ext"), `subjectAltName=DNS:${DOMAIN}\n`);
    openssl(["x509", "-req", "-in", f("leaf.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial",
        "-out", f("leaf.pem"), "-days", "2", "-extfile", f("leaf.ext")]);
    openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f("public.key"),
        "-out", f("public.pem"), "-days", "2", "-subj", "/CN=a public CA"]);
    return { ca: f("ca.pem"), cert: f("leaf.pem"), key: f("leaf.key") };
}

/** The target's /var/lib/acme/DOMAIN (in its root, as this machine sees it). */
function acmeDir(): string {
    return path.join(t().root, "var/lib/acme", DOMAIN);
}

function deploy(extra: Record<string, string> = {}) {
    const r = runScript(
        "deploy.sh",
        scriptEnv(t(), {
            SYSTEM_CLOSURE: closure,
            HEALTH_URL: `https://${DOMAIN}/health.txt`,
            HEALTH_RESOLVE: `${DOMAIN}:443:${t().addr4}`,
            // The "public CAs": a bundle without the placeholder's CA.
            CURL_CA_BUNDLE: path.join(tmp, "public.pem"),
            ...extra,
        }),
    );
    expect(ourControlMasters()).toEqual([]);
    return r;
}

beforeAll(() => {
    const p = makePlaceholder();
    placeholderCa = fs.readFileSync(p.ca, "utf8");
    closure = buildClosure({ name: "acme-first" });
    const saved = { cert: process.env.TARGET_TLS_CERT, key: process.env.TARGET_TLS_KEY };
    process.env.TARGET_TLS_CERT = p.cert;
    process.env.TARGET_TLS_KEY = p.key;
    try {
        target = startTarget({ ipv6: false }); // its site serves that certificate on 443
    } finally {
        for (const [k, v] of [["TARGET_TLS_CERT", saved.cert], ["TARGET_TLS_KEY", saved.key]] as const) {
            if (v === undefined) delete process.env[k];
            else process.env[k] = v;
        }
    }
    fs.mkdirSync(acmeDir(), { recursive: true });
    fs.writeFileSync(path.join(acmeDir(), "chain.pem"), placeholderCa);
});

afterAll(() => {
    stopTarget(target);
    fs.rmSync(tmp, { recursive: true, force: true });
});

test("before the records: a host that never had its certificate passes with its placeholder, checked against its own minica CA", () => {
    const r = deploy({ HEALTH_ACME: "placeholder" });
    expect(r.stderr).toContain("its self-signed placeholder is accepted, checked against the host's own minica CA");
    expect(r.status).toBe(0);
    expect(currentSystem(t())).toBe(closure);
    // The one line on stdout: what the host accepted.
    expect(r.stdout.trim().split("\n").pop()).toBe(`BLOG_DEPLOYED_SYSTEM=${closure}`);
});

test("nothing to change is still health-checked: an unhealthy host fails with exit 5, changed in nothing", () => {
    // Without HEALTH_ACME the placeholder is not trusted: the site does not pass.
    const r = deploy();
    expect(r.stderr).toContain("Nothing to change: the target already runs and boots");
    expect(r.stderr).toMatch(/already runs and boots \/nix\/store\/\S+ \(nothing was changed, so there is nothing to roll back to\), but it is not healthy: health check:/);
    expect(r.status).toBe(5);
    expect(r.stdout).not.toContain("BLOG_DEPLOYED_SYSTEM=");
    expect(currentSystem(t())).toBe(closure);
    // The same host, healthy: exit 0 and the report.
    const again = deploy({ HEALTH_ACME: "placeholder" });
    expect(again.status).toBe(0);
    expect(again.stdout.trim()).toBe(`BLOG_DEPLOYED_SYSTEM=${closure}`);
});

test("a host that has had its certificate is checked against the public CAs, placeholder mode or not", () => {
    fs.writeFileSync(path.join(acmeDir(), "acme-success"), "");
    try {
        const r = deploy({ HEALTH_ACME: "placeholder" });
        expect(r.stderr).not.toContain("placeholder is accepted");
        expect(r.status).toBe(5);
    } finally {
        fs.rmSync(path.join(acmeDir(), "acme-success"));
    }
});

test("a placeholder CA that is not a PEM certificate is not used", () => {
    fs.writeFileSync(path.join(acmeDir(), "chain.pem"), "not a certificate\n");
    try {
        const r = deploy({ HEALTH_ACME: "placeholder" });
        expect(r.stderr).toContain("is missing or not a PEM certificate; checking with the usual CAs");
        expect(r.status).toBe(5);
    } finally {
        fs.writeFileSync(path.join(acmeDir(), "chain.pem"), placeholderCa);
    }
});

test("after the records: a certificate that is not issued within ACME_TIMEOUT fails with exit 5 naming the order unit", () => {
    const r = deploy({ HEALTH_ACME: "issued", ACME_TIMEOUT: "6" });
    expect(r.stderr).toContain(`has never had its ACME certificate for ${DOMAIN}`);
    // The order unit is started on the target's systemd (it has none here: the start fails, and
    // the deploy waits on, as it would for an order that fails).
    expect(r.stderr).toMatch(/started acme-order-renew-|could not start acme-order-renew-/);
    expect(r.stderr).toContain(`its ACME certificate for ${DOMAIN} was not issued within 6s (ACME_TIMEOUT)`);
    expect(r.stderr).toContain(`acme-order-renew-${DOMAIN}.service`);
    expect(r.status).toBe(5);
});

test("after the records: the deploy starts the host's order unit on its systemd and waits until the certificate is issued", () => {
    // A system whose acme-order-renew-DOMAIN.service succeeds, as an order once the records point at
    // the host (the NixOS acme module's unit marks its first success with acme-success).
    const ordering = buildClosure({
        name: "acme-ordering",
        units: {
            [`acme-order-renew-${DOMAIN}.service`]: {
                text: `[Unit]\nDescription=Order (test)\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'sleep 2; touch /var/lib/acme/${DOMAIN}/acme-success'\n`,
            },
        },
    });
    // Once issued, the site's certificate is one the public CAs accept (here: the placeholder's CA
    // stands for one).
    const bundle = path.join(tmp, "public-and-issued.pem");
    fs.writeFileSync(bundle, fs.readFileSync(path.join(tmp, "public.pem"), "utf8") + placeholderCa);
    const env = (acme: string) =>
        scriptEnv(t(), {
            SYSTEM_CLOSURE: ordering,
            HEALTH_URL: `https://${DOMAIN}/health.txt`,
            HEALTH_RESOLVE: `${DOMAIN}:443:${t().addr4}`,
            CURL_CA_BUNDLE: bundle,
            HEALTH_ACME: acme,
            ACME_TIMEOUT: "60",
        });
    try {
        // The deploy before the records (the placeholder passes), then the check after them (the
        // stack's blog-check: the same system, nothing to change, HEALTH_ACME=issued).
        const before = runScript("deploy.sh", env("placeholder"));
        expect(before.status).toBe(0);
        expect(fs.existsSync(path.join(acmeDir(), "acme-success"))).toBe(false);
        const r = runScript("deploy.sh", env("issued"));
        expect(r.stderr).toContain(`started acme-order-renew-${DOMAIN}.service on the target`);
        expect(r.stderr).toContain(`the certificate for ${DOMAIN} is issued`);
        expect(r.status).toBe(0);
        expect(fs.existsSync(path.join(acmeDir(), "acme-success"))).toBe(true);
    } finally {
        fs.rmSync(path.join(acmeDir(), "acme-success"), { force: true });
    }
});

test("bad HEALTH_ACME input is refused with exit 1", () => {
    expect(deploy({ HEALTH_ACME: "maybe" }).status).toBe(1);
    const plain = deploy({ HEALTH_ACME: "placeholder", HEALTH_URL: `http://${DOMAIN}:${t().healthPort}/health.txt` });
    expect(plain.status).toBe(1);
    expect(plain.stderr).toContain("needs HEALTH_URL");
});
