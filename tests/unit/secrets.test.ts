import * as pulumi from "@pulumi/pulumi";
import { readStackConfig } from "../../src/config";
import { ageRecipient } from "../../src/keys";
import { ZONE_ID, evaluation, runProgram } from "./program";

const DEPLOY = "command:local:Command";

function read(config: Record<string, string>, secretKeys: string[] = ["blog:hostSecrets"]) {
    pulumi.runtime.setAllConfig({ "blog:cloudflareZoneId": ZONE_ID, ...config }, secretKeys);
    return readStackConfig(new pulumi.Config("blog"));
}

function problem(config: Record<string, string>, secretKeys?: string[]): string {
    try {
        read(config, secretKeys);
    } catch (err) {
        return (err as Error).message;
    }
    throw new Error(`config ${JSON.stringify(config)} was accepted; expected an error`);
}

const secrets = (value: object) => ({ "blog:hostSecrets": JSON.stringify(value) });

describe("hostSecrets in the stack config", () => {
    test("each value is kept as a Pulumi secret, numbers as text", async () => {
        const config = read(secrets({ dbPassword: "hunter2-but-longer", pin: 1234 }));
        expect(Object.keys(config.hostSecrets)).toEqual(["dbPassword", "pin"]);
        expect(await pulumi.isSecret(config.hostSecrets.dbPassword)).toBe(true);
    });

    test.each([
        [secrets({ "db-password": "x" }), "blog:hostSecrets.db-password: got \"[secret]\"; expected a name of letters, digits and _"],
        [secrets({ cloudflareOriginKey: "x" }), "blog:hostSecrets.cloudflareOriginKey: got \"[secret]\"; expected another name"],
        [secrets({ nested: { a: "b" } }), 'blog:hostSecrets.nested: got "[secret, an object]"; expected a text value'],
        [secrets({ empty: "" }), "blog:hostSecrets.empty: got \"[secret, 0 characters]\"; expected a non-empty value"],
        [{ "blog:hostSecrets": "hunter2" }, 'blog:hostSecrets: got "[secret, 7 characters]"; expected an object of secret names to values'],
    ])("refuses %j without showing a value", (config, message) => {
        const text = problem(config);
        expect(text).toContain(message);
        expect(text).not.toContain("hunter2");
    });

    test("an empty object, what removing the last secret leaves, is no secrets", () => {
        expect(read(secrets({}), []).hostSecrets).toEqual({});
    });

    test("refuses secrets set in plain text, saying how to set them", () => {
        const text = problem(secrets({ dbPassword: "hunter2" }), []);
        expect(text).toContain("blog:hostSecrets: got \"[secret, 24 characters]\"; expected secrets: set each value again with `pulumi config set --secret --path 'hostSecrets.<name>' <value>`");
        expect(text).not.toContain("hunter2");
    });
});

describe("the deploy delivers the host secrets", () => {
    const env = async (config: Record<string, string>, declared: string[] = []) => {
        const run = await runProgram({
            config,
            secretKeys: ["blog:hostSecrets"],
            evaluation: { ...evaluation(), secrets: declared },
        });
        const deploy = run.all(DEPLOY).find((r) => r.name === "blog-switch")!;
        return { environment: deploy.inputs.environment as Record<string, string>, secretPaths: deploy.secretPaths };
    };

    test("as one environment variable each, secret, with the complete list of names in HOST_SECRETS", async () => {
        const { environment, secretPaths } = await env(secrets({ zeta: "z-value", alpha: "a-value" }), ["alpha"]);
        expect(environment.HOST_SECRETS).toBe("alpha zeta");
        expect(environment.HOST_SECRET_alpha).toBe("a-value");
        expect(environment.HOST_SECRET_zeta).toBe("z-value");
        // Secrecy per key in state is the engine's: the e2e suite checks it (the mocks mark the whole map).
        expect(secretPaths).toContain("environment");
    });

    test("with none, HOST_SECRETS is empty, so secrets removed from the config are removed from the host", async () => {
        const { environment } = await env({});
        expect(environment.HOST_SECRETS).toBe("");
        expect(Object.keys(environment).filter((k) => k.startsWith("HOST_SECRET_"))).toEqual([]);
    });

    test("a secret the configuration's services read but the stack lacks fails before anything is created", async () => {
        const run = runProgram({ evaluation: { ...evaluation(), secrets: ["backendApiKey"] } });
        await expect(run).rejects.toThrow(
            "blog:hostSecrets.backendApiKey: got nothing; expected a value: the configuration's services read this secret " +
                "(`pulumi config set --secret --path 'hostSecrets.backendApiKey' <value>`)",
        );
        await expect(run).rejects.toMatchObject({ registered: [] });
    });

    test("a secret no service declares is delivered all the same, with a warning", async () => {
        const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
        const { environment } = await env(secrets({ spare: "s" }));
        expect(environment.HOST_SECRETS).toBe("spare");
        expect(warn.mock.calls.map((c) => String(c[0]))).toContainEqual(expect.stringContaining("blog:hostSecrets has spare, which no service"));
        warn.mockRestore();
    });
});

describe("the host's age recipient (sops-nix, agenix)", () => {
    test("is the pinned ssh-ed25519 host key in Montgomery form, as ssh-to-age prints it", () => {
        // Vector: PyNaCl's crypto_sign_ed25519_pk_to_curve25519 (libsodium) of this key, bech32 "age".
        expect(ageRecipient("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA2ybKMXrRWb8pXvSeIf+3Ob86Fsq8Xvha7IP8YcgRqi t")).toBe(
            "age12wg398hmcu8d6m729mkz258dnf98mzqv48u8m0z2nvx2c4t7la4snkatcz",
        );
        expect(() => ageRecipient("ssh-rsa AAAAB3NzaC1yc2E")).toThrow("with type one of ssh-ed25519");
    });

    test("matches ssh-to-age's own published pair", () => {
        // Mic92/ssh-to-age at 2643a7f: cmd/ssh-to-age/test-assets/keyscan.txt holds eve's and eva's
        // ed25519 host keys, and README.md shows `ssh-keyscan eve.thalheim.io eva.thalheim.io | ssh-to-age`
        // printing these two recipients.
        expect(ageRecipient("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF/KPU3Z5LSjbBI6hrq25wCcseq2UpqSzUFZRr+ux6LM")).toBe(
            "age1hjm3aujg9e79f5yth8a2cejzdjg5n9vnu96l05p70uvfpeltnpms7yy3pp",
        );
        expect(ageRecipient("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIL2vjdqpppuCn7yPdF2muINriAG7zBWrsELKpPWkhn5")).toBe(
            "age1v8zjc47jmlqwefyu66s0d4ke98qr4vnuj3cpvs4z9npfdw833dxqwjrhzv",
        );
    });
});
