import { StackConfig, configDefaults } from "../../src/config";
import { checkEvaluation, domainProblem } from "../../src/host";
import { publicKeyProblem } from "../../src/keys";
import { ADMIN_KEY, CLOSURE_1, ZONE_ID, evaluation, runProgram } from "./program";

/** The key the example host in nix/hosts/blog.nix ships with; the stack must refuse it. */
const PLACEHOLDER_KEY =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA PLACEHOLDER-replace-with-your-own-key";

const config: StackConfig = { ...configDefaults, hostSecrets: {}, backup: { target: { kind: "none" } }, cloudflareZoneId: ZONE_ID };
const ATTR = './nix#nixosConfigurations."blog".config.blog.host';

function problems(raw: unknown, stack: StackConfig = config): string {
    try {
        checkEvaluation(raw, stack);
    } catch (err) {
        return (err as Error).message;
    }
    throw new Error(`${JSON.stringify(raw)} was accepted; expected an error`);
}

describe("host facts read from the flake", () => {
    test("a real host's facts pass and come back as they are", () => {
        const { host, toplevel } = evaluation();
        expect(checkEvaluation(evaluation(), config)).toEqual({
            host: { ...host, tls: "acme", dataVolume: false },
            secrets: [],
            backupPaths: ["/data"],
            toplevel,
            warnings: [],
        });
    });

    test.each([
        ["blog.example-site.org.", "a fully qualified lowercase domain without a trailing dot"],
        ["localhost", "a fully qualified lowercase domain"],
        ["Blog.Example-Site.org", "a fully qualified lowercase domain"],
        ["-blog.example-site.org", "a fully qualified lowercase domain"],
        ["example.com", "your own domain: this is the example host's placeholder"],
        ["www.example.org", "your own domain: this is the example host's placeholder"],
    ])("refuses the domain %j", (domain, expected) => {
        expect(problems(evaluation({ domain }))).toContain(`${ATTR}.domain: got ${JSON.stringify(domain)}; expected ${expected}`);
    });

    test("refuses an ACME e-mail at an example domain, which ACME itself rejects", () => {
        expect(problems(evaluation({ acmeEmail: "admin@example.com" }))).toContain(
            `${ATTR}.acmeEmail: got "admin@example.com"; expected your own address`,
        );
        expect(problems(evaluation({ acmeEmail: "not an address" }))).toContain(`${ATTR}.acmeEmail`);
    });

    test("refuses a host without admin keys: nobody could log in", () => {
        expect(problems(evaluation({ adminSshKeys: [] }))).toContain(
            `${ATTR}.adminSshKeys: got []; expected a non-empty list of OpenSSH public keys`,
        );
    });

    test("refuses the example host's placeholder key", () => {
        expect(problems(evaluation({ adminSshKeys: [ADMIN_KEY, PLACEHOLDER_KEY] }))).toContain(
            `${ATTR}.adminSshKeys[1]: got ${JSON.stringify(PLACEHOLDER_KEY)}; expected your own public key`,
        );
    });

    test("refuses any key whose comment marks it as a placeholder", () => {
        expect(publicKeyProblem(ADMIN_KEY.replace("alice@laptop", "placeholder"))).toContain("your own public key");
    });

    test("refuses a key line that is not an OpenSSH public key", () => {
        expect(publicKeyProblem("ssh-ed25519 bm90IGEga2V5")).toContain("is not a well-formed ssh-ed25519 key");
        expect(publicKeyProblem("ssh-dss AAAAB3NzaC1kc3M=")).toContain("with type one of");
        expect(publicKeyProblem("my key")).toContain("an OpenSSH public key line");
        expect(publicKeyProblem(ADMIN_KEY)).toBeUndefined();
    });

    test("leaves the server type's architecture to Hetzner's answer (preflight), whatever the type's name", () => {
        expect(checkEvaluation(evaluation({ system: "aarch64-linux" }), { ...config, serverType: "cx23" }).host.system).toBe(
            "aarch64-linux",
        );
    });

    test("refuses an evaluation without a system store path", () => {
        expect(problems({ ...evaluation(), toplevel: "not-a-path" })).toContain(
            './nix#nixosConfigurations."blog".config.system.build.toplevel: got "not-a-path"; expected a Nix store path',
        );
    });

    test("refuses a flake without the host-facts module, naming what it tried", () => {
        expect(problems({ toplevel: CLOSURE_1 })).toContain(`${ATTR}.domain: got nothing; expected a string`);
    });

    test("domainProblem accepts ordinary names", () => {
        for (const d of ["blog.alice.dev", "alice.dev", "a-b.c-d.co.uk", "xn--bcher-kva.example-site.org"]) {
            expect([d, domainProblem(d)]).toEqual([d, undefined]);
        }
    });
});

describe("the example host as shipped", () => {
    test("fails preview before any resource, naming the domain and the key to change", async () => {
        const failure = await runProgram({
            preview: true,
            evaluation: evaluation({ domain: "example.com", acmeEmail: "admin@example.com", adminSshKeys: [PLACEHOLDER_KEY] }),
        }).catch((err) => err);
        expect(failure.message).toContain(".domain: got \"example.com\"");
        expect(failure.message).toContain(".adminSshKeys[0]");
        expect(failure.registered).toEqual([]);
    });
});
