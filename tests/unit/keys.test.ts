// Public keys are parsed per type at preview, as sshd would read them, so that no key in the
// host facts or the config can lock the owner out; the deploy's login key must stay among the
// admin keys; the age recipient matches ssh-to-age; the deploy's report is read exactly.
// The keys below were made for these tests with ssh-keygen (OpenSSH 9.2); the sk- lines are
// built from their points and checked with `ssh-keygen -lf` (ED25519-SK, ECDSA-SK).
import { deployedSystem } from "../../src/deploy";
import { loginKeyProblems } from "../../src/host";
import { ADMIN_KEY_TYPES, HOST_KEY_TYPES, fingerprint, parsePublicKey, publicKeyOfPrivate, publicKeyProblem } from "../../src/keys";
import { ADMIN_KEY, SSH_PRIVATE_KEY } from "./program";

const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP+Fc01H7ObcW+wOLAslS6VbRK2g3hgLgwNdImAFHu45 ed";
const ECDSA256 = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFT9WVx6yn0NzOr54u0dMUS9BZ/kWXAL0ah1wVmL+QUYFbx0x65ceVJ+MMPPguvwx6w5aX1AGcUY5aWvrkca0EQ= e256";
const ECDSA384 = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBMxy02O3fawYSaZtBXPpUTJH9qHHs/4k8Y/F+8nr6Zk6r3mvUQ4V4kn/Fqrc5wdgglMeki8QpP80VsBoAw5l6iYdQdcS7mfH3Ns41PMXeEEAbQgjSfPafDbdn9uik+w64Q== e384";
const ECDSA521 = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBACrXeD1eHIsdwnIeTaHGjKsX+5OaoP0UeqizDfoOdvTVGLh9IJzEAiPn7INCRVeOnIkOmacInzZBnfsafOKhFLDIwH8tnxCRGgN+eqU5KdbWgeYQ/GDerRHG2gLwa21SlJ/jrtJNbouhNE+K57ll++N8ej93i1eHv1BiOVVpPA/vktP3Q== e521";
const RSA3072 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC3BcrdnSiiGxG8VE5GIKkLVMyW3PQhtEjSrGG/L9zgBG/CW5QMNY1KxUDXrzdtVAF3urWtepcxv5UMKMKWXOaZsOMOR2x4TvZq3uNBJvmZynxY1wwGIktHV7GjeGJyDe+ESMMU6XaXNbBjx34sJmL6D3oHE5Sr7GbOUrzS4khL7fDc9aJEL1cTM4JKUsy9McXb0d3gIs5XXm0p2cHM/920bCzeBoyA+u/8AuqJUx3AMr5ryBKAg2jZwQCLZ3mj3Dx5LZRlH5mrrCVPeMn3DWzQzY0ymhww76l+IkFjZQnmdDHFgfE4IOfxNI6mRRYvGvvfyMuYA4ksIxQri9ljA1gmHQ5gc+MjJH9SUanmIKxeG40hIegmfAKaHN2vYcer2uzW3gC70tzKTzzQw4mUo13MXtdtBFkQGN5HGfQXGeNtEcsbnuHIXPsT0IG/BWM7o9qz/LO5Gmx2HslWAyK4IVeplI7NKHnK20dVgU4D4E2DSJutvc62ybhwC8j/7fAQ6hk= rsa";
const RSA1024 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDq8D8a2WsKF8A3hADvKpgDksONa5bfq9Jm2WqT4C0FFW3LCSkzyePinm/hxQrA110oSHISSzJ1c/JYhaXMr65HbxiTyg99jYNW+u1KT0oBDZ4YzkxtiR42CAaXoohPHs1xjO+CyXKjY8O+uThZOBQleHz+CHIS9d67p0T5479RVQ== rsa1024";
const SK_ED25519 = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIP+Fc01H7ObcW+wOLAslS6VbRK2g3hgLgwNdImAFHu45AAAABHNzaDo=";
const SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBFT9WVx6yn0NzOr54u0dMUS9BZ/kWXAL0ah1wVmL+QUYFbx0x65ceVJ+MMPPguvwx6w5aX1AGcUY5aWvrkca0EQAAAAEc3NoOg==";
const SK_ED25519_WEB = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIP+Fc01H7ObcW+wOLAslS6VbRK2g3hgLgwNdImAFHu45AAAABHdlYjo=";
/** A PEM (not OpenSSH-format) private key and its public line. */
const EC_PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEINr9tHBE1pg390XdPkUefNreL1TahTJwSxtRlZdOY534oAoGCCqGSM49\nAwEHoUQDQgAE+ou59h6H6qOIeciMhubtq6P1BQ0C0oOxncVrbk61/vqP25J3iALc\n37GUapv14BKU508BPT/os6CiPuQv5t3M6Q==\n-----END EC PRIVATE KEY-----\n";
const EC_PEM_PUBLIC = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPqLufYeh+qjiHnIjIbm7auj9QUNAtKDsZ3Fa25Otf76j9uSd4gC3N+xlGqb9eASlOdPAT0/6LOgoj7kL+bdzOk= ecpem";

/** A key line whose blob is `mutate`d. */
function mutated(line: string, mutate: (blob: Buffer) => Buffer): string {
    const [type, text] = line.split(" ");
    return `${type} ${mutate(Buffer.from(text, "base64")).toString("base64")}`;
}

/** An SSH string (uint32 length, bytes). */
function sshString(b: Buffer | string): Buffer {
    const bytes = Buffer.from(b);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    return Buffer.concat([length, bytes]);
}

describe("public keys, parsed per type", () => {
    test.each([ED25519, ECDSA256, ECDSA384, ECDSA521, RSA3072, SK_ED25519, SK_ECDSA])("takes %s", (line) => {
        expect(publicKeyProblem(line)).toBeUndefined();
    });

    test("refuses a truncated ed25519 key: valid base64, 26 of its 32 key bytes", () => {
        const truncated = `ssh-ed25519 ${Buffer.concat([sshString("ssh-ed25519"), sshString(Buffer.alloc(26, 7))]).toString("base64")}`;
        expect(publicKeyProblem(truncated)).toContain("an ed25519 key has exactly 32 key bytes; this one has 26");
    });

    test("refuses 32 ed25519 key bytes that are not a point of the curve", () => {
        const notPoint = `ssh-ed25519 ${Buffer.concat([sshString("ssh-ed25519"), sshString(Buffer.alloc(32, 0xff))]).toString("base64")}`;
        expect(publicKeyProblem(notPoint)).toContain("not a point of the ed25519 curve");
    });

    test("refuses an ECDSA point off its curve, and a curve field that contradicts the type", () => {
        const offCurve = mutated(ECDSA256, (b) => {
            const c = Buffer.from(b);
            c[c.length - 1] ^= 1;
            return c;
        });
        expect(publicKeyProblem(offCurve)).toContain("its public point is not a point of the nistp256 curve");
        const [, text] = ECDSA256.split(" ");
        const q = Buffer.from(text, "base64").subarray(4 + 19 + 4 + 8 + 4);
        const mismatch = `ecdsa-sha2-nistp384 ${Buffer.concat([sshString("ecdsa-sha2-nistp384"), sshString("nistp256"), sshString(q)]).toString("base64")}`;
        expect(publicKeyProblem(mismatch)).toContain('its curve field says "nistp256", its type ecdsa-sha2-nistp384 says nistp384');
    });

    test("refuses an RSA key under 2048 bits, and a blob that names another type", () => {
        expect(publicKeyProblem(RSA1024)).toContain("an RSA key of at least 2048 bits; this one has 1024");
        const other = `ssh-rsa ${ED25519.split(" ")[1]}`;
        expect(publicKeyProblem(other)).toMatch(/not a well-formed ssh-rsa key|encodes a "ssh-ed25519" key/);
    });

    test("refuses bytes left over after the key, and a FIDO key of another application", () => {
        expect(publicKeyProblem(mutated(ED25519, (b) => Buffer.concat([b, sshString("x")])))).toContain("left after unpack");
        expect(publicKeyProblem(SK_ED25519_WEB)).toContain('its FIDO application is "web:"');
    });

    test("host keys: the types the deploy pins, no FIDO keys", () => {
        for (const line of [ED25519, ECDSA256, ECDSA384, ECDSA521, RSA3072]) expect(publicKeyProblem(line, HOST_KEY_TYPES)).toBeUndefined();
        expect(publicKeyProblem(SK_ED25519, HOST_KEY_TYPES)).toContain("with type one of ssh-ed25519, ecdsa-sha2-nistp256");
        expect(ADMIN_KEY_TYPES).toEqual([...HOST_KEY_TYPES, "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"]);
    });

    test("the fingerprint is OpenSSH's (ssh-keygen -lf)", () => {
        expect(fingerprint(parsePublicKey(SK_ED25519))).toBe("SHA256:TiRa3n/L8ed+fqXbplIc1kTso6tSO5ixW93rxjwJ1aQ");
        expect(fingerprint(parsePublicKey(SK_ECDSA))).toBe("SHA256:M5GhIaOb6Xje1vFFqQ/eTe33HEx7pJxA1s8Bk/181bQ");
    });
});

describe("the deploy's login key", () => {
    const option = (name: string) => `config.blog.host.${name}`;
    const config = (extra: Record<string, unknown> = {}) => ({ loginKey: publicKeyOfPrivate(SSH_PRIVATE_KEY), ...extra }) as any;

    test("is the public half of sshPrivateKey, from OpenSSH's format or PEM", () => {
        const id = (l: string) => l.split(" ").slice(0, 2).join(" ");
        const show = (k: ReturnType<typeof publicKeyOfPrivate>) => `${k.type} ${Buffer.from(k.blob).toString("base64")}`;
        expect(show(publicKeyOfPrivate(SSH_PRIVATE_KEY))).toBe(id(ADMIN_KEY));
        expect(show(publicKeyOfPrivate(EC_PEM))).toBe(id(EC_PEM_PUBLIC));
    });

    test("must stay among the admin keys: a list without it is refused, naming it and the safe order", () => {
        expect(loginKeyProblems([ADMIN_KEY, ED25519], config(), option)).toEqual([]);
        const [problem] = loginKeyProblems([ED25519], config(), option);
        const print = fingerprint(publicKeyOfPrivate(SSH_PRIVATE_KEY));
        expect(String(problem)).toContain(`expected a list that keeps the key the deploy logs in with (blog:sshPrivateKey, ssh-ed25519 ${print})`);
        expect(String(problem)).toContain("add the new public key to adminSshKeys; set sshPrivateKey to the new private key");
        expect(String(problem)).toContain(`pulumi config set allowRemovingLoginKey ${print}`);
    });

    test("may leave only with a confirmation that names it; without sshPrivateKey nothing is checked", () => {
        const print = fingerprint(publicKeyOfPrivate(SSH_PRIVATE_KEY));
        expect(loginKeyProblems([ED25519], config({ allowRemovingLoginKey: print }), option)).toEqual([]);
        expect(loginKeyProblems([ED25519], config({ allowRemovingLoginKey: "SHA256:" + "A".repeat(43) }), option)).toHaveLength(1);
        expect(loginKeyProblems([ED25519], {} as any, option)).toEqual([]);
    });
});

describe("the deploy's report (systemClosure)", () => {
    const path = "/nix/store/0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-nixos-system-blog-25.11";

    test("is the last BLOG_DEPLOYED_SYSTEM line, exactly a store path", () => {
        expect(deployedSystem(`noise\nBLOG_DEPLOYED_SYSTEM=${path}`)).toBe(path);
        expect(deployedSystem(`BLOG_DEPLOYED_SYSTEM=/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x\nBLOG_DEPLOYED_SYSTEM=${path}\n`)).toBe(path);
    });

    test("takes nothing else out of the command's (secret) output", () => {
        expect(deployedSystem(undefined)).toBeUndefined();
        expect(deployedSystem("Nothing to do")).toBeUndefined();
        expect(deployedSystem(`BLOG_DEPLOYED_SYSTEM=${path} trailing`)).toBeUndefined();
        expect(deployedSystem(`BLOG_DEPLOYED_SYSTEM=${path}/etc`)).toBeUndefined();
        // e, o, u, t are not in Nix's base32.
        expect(deployedSystem("BLOG_DEPLOYED_SYSTEM=/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x")).toBeUndefined();
        expect(deployedSystem(`x BLOG_DEPLOYED_SYSTEM=${path}`)).toBeUndefined();
    });
});
