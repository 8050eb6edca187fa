// OpenSSH public keys, parsed per type, and the host's age recipient.
//
// Why these libraries (evaluated 2026-12 against the cases a lockout comes from):
//   - sshpk 1.18.0 accepts an ssh-ed25519 blob with 26 key bytes, an ECDSA point off its curve,
//     and knows no sk- (FIDO) types; its last release is from 2023.
//   - ssh2 1.17.0's parseKey refuses the short ed25519 key but accepts an ECDSA point off its
//     curve and a curve field that contradicts the type (nistp384 inside ecdsa-sha2-nistp256),
//     accepts trailing bytes, knows no sk- types, and is a whole SSH client (optional native code).
//   - @noble/curves (audited; paulmillr) validates points: ed25519 encodings (`Point.fromBytes`)
//     and P-256/384/521 points on their curve; it also has the Edwards to Montgomery map that
//     ssh-to-age uses. @scure/base (audited) has strict base64 and bech32. micro-packed (the same
//     author's binary coder, what micro-key-producer's SSH keys are made of) reads the SSH wire
//     format (RFC 4253 section 6.6, PROTOCOL.u2f for the sk- types) and refuses trailing bytes.
//     RSA's structure and size are node's crypto (OpenSSL). So the per-type rules below are the
//     ones OpenSSH's sshkey_from_blob applies (sshkey.c: key lengths, the curve name matching the
//     type, the point validated, no trailing data, an RSA modulus of at least
//     SSH_RSA_MINIMUM_MODULUS_SIZE), each checked by one of those libraries.
import { createHash, createPrivateKey, createPublicKey } from "crypto";
import { ed25519 } from "@noble/curves/ed25519.js";
import { p256, p384, p521 } from "@noble/curves/nist.js";
import { base64, base64urlnopad, bech32 } from "@scure/base";
import * as P from "micro-packed";

/** Host key types the stack pins (scripts/lib/common.sh's check takes the same). */
export const HOST_KEY_TYPES = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"];
/** Admin keys may also be FIDO security keys (OpenSSH PROTOCOL.u2f). */
export const ADMIN_KEY_TYPES = [...HOST_KEY_TYPES, "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"];

/** The smallest RSA modulus taken: NIST's floor since 2013 (OpenSSH's own, RequiredRSASize, is 1024). */
export const MIN_RSA_BITS = 2048;
/** OpenSSH's largest (SSHBUF_MAX_BIGNUM, 2048 bytes). */
const MAX_RSA_BITS = 16384;

// The SSH wire format: a string is a uint32 length and that many bytes.
const sshString = P.string(P.U32BE);
const sshBytes = P.bytes(P.U32BE);
const blobs = {
    "ssh-ed25519": P.struct({ type: sshString, key: sshBytes }),
    "ssh-rsa": P.struct({ type: sshString, e: sshBytes, n: sshBytes }),
    ecdsa: P.struct({ type: sshString, curve: sshString, q: sshBytes }),
    "sk-ssh-ed25519@openssh.com": P.struct({ type: sshString, key: sshBytes, application: sshString }),
    "sk-ecdsa-sha2-nistp256@openssh.com": P.struct({ type: sshString, curve: sshString, q: sshBytes, application: sshString }),
};
const CURVES = { nistp256: p256, nistp384: p384, nistp521: p521 } as const;

/** A public key line, parsed: its type, its blob (the base64 part, decoded) and its comment. */
export interface PublicKey {
    type: string;
    blob: Uint8Array;
    comment: string;
}

/** A key line's type and blob, without the comment: what sshd compares. */
export function keyId(key: PublicKey): string {
    return `${key.type} ${base64.encode(key.blob)}`;
}

/** OpenSSH's fingerprint of a key: SHA256:<base64 of the blob's SHA-256, unpadded>. */
export function fingerprint(key: PublicKey): string {
    return `SHA256:${createHash("sha256").update(key.blob).digest("base64").replace(/=+$/, "")}`;
}

class KeyError extends Error {}

/** An RSA mpint (RFC 4251 section 5) that is positive and minimally encoded, as a big-endian magnitude. */
function mpint(bytes: Uint8Array, what: string): Uint8Array {
    if (bytes.length === 0 || (bytes[0] & 0x80) !== 0) throw new KeyError(`its RSA ${what} is not a positive number`);
    if (bytes[0] === 0 && (bytes.length === 1 || (bytes[1] & 0x80) === 0)) throw new KeyError(`its RSA ${what} has a needless leading zero byte`);
    return bytes[0] === 0 ? bytes.subarray(1) : bytes;
}

function ed25519Point(key: Uint8Array): void {
    if (key.length !== 32) throw new KeyError(`an ed25519 key has exactly 32 key bytes; this one has ${key.length}`);
    try {
        ed25519.Point.fromBytes(key);
    } catch {
        throw new KeyError("its 32 key bytes are not a point of the ed25519 curve");
    }
}

function ecdsaPoint(type: string, curve: string, q: Uint8Array, expected: keyof typeof CURVES): void {
    if (curve !== expected) throw new KeyError(`its curve field says ${JSON.stringify(curve)}, its type ${type} says ${expected}`);
    try {
        CURVES[expected].Point.fromBytes(q);
    } catch {
        throw new KeyError(`its public point is not a point of the ${expected} curve`);
    }
}

function skApplication(application: string): void {
    // ssh-keygen -t ...-sk writes "ssh:" unless told another name that starts with it (PROTOCOL.u2f).
    if (!application.startsWith("ssh:")) throw new KeyError(`its FIDO application is ${JSON.stringify(application)}, not one starting with "ssh:"`);
}

/** Checks the blob of a key of `type`: per type, as OpenSSH reads it. Throws KeyError with why not. */
function checkBlob(type: string, blob: Uint8Array): void {
    let decoded: Record<string, unknown>;
    const coder = type.startsWith("ecdsa-sha2-") ? blobs.ecdsa : blobs[type as keyof typeof blobs];
    try {
        decoded = coder.decode(blob) as Record<string, unknown>;
    } catch (e) {
        // micro-packed says what it could not read (a field cut short, bytes left over).
        throw new KeyError(`its base64 part is not a well-formed ${type} key (${(e as Error).message})`);
    }
    if (decoded.type !== type) throw new KeyError(`its base64 part encodes a ${JSON.stringify(decoded.type)} key, not ${type}`);
    switch (type) {
        case "ssh-ed25519":
            return ed25519Point(decoded.key as Uint8Array);
        case "sk-ssh-ed25519@openssh.com":
            ed25519Point(decoded.key as Uint8Array);
            return skApplication(decoded.application as string);
        case "sk-ecdsa-sha2-nistp256@openssh.com":
            ecdsaPoint(type, decoded.curve as string, decoded.q as Uint8Array, "nistp256");
            return skApplication(decoded.application as string);
        case "ssh-rsa": {
            const e = mpint(decoded.e as Uint8Array, "exponent");
            const n = mpint(decoded.n as Uint8Array, "modulus");
            let details;
            try {
                const jwk = { kty: "RSA", e: base64urlnopad.encode(e), n: base64urlnopad.encode(n) };
                details = createPublicKey({ key: jwk, format: "jwk" }).asymmetricKeyDetails!;
            } catch (err) {
                throw new KeyError(`its RSA exponent and modulus are not an RSA public key (${(err as Error).message})`);
            }
            const bits = details.modulusLength ?? 0;
            const exponent = details.publicExponent ?? 0n;
            if ((n[n.length - 1] & 1) === 0) throw new KeyError("its RSA modulus is even");
            if (exponent < 3n || exponent % 2n === 0n) throw new KeyError(`its RSA exponent ${exponent} is not an odd number of at least 3`);
            if (bits < MIN_RSA_BITS) throw new KeyError(`an RSA key of at least ${MIN_RSA_BITS} bits; this one has ${bits}`);
            if (bits > MAX_RSA_BITS) throw new KeyError(`an RSA key of at most ${MAX_RSA_BITS} bits (OpenSSH's limit); this one has ${bits}`);
            return;
        }
        default: {
            const curve = type.slice("ecdsa-sha2-".length) as keyof typeof CURVES;
            return ecdsaPoint(type, decoded.curve as string, decoded.q as Uint8Array, curve);
        }
    }
}

/**
 * Parses an OpenSSH public key line ("<type> <base64> [comment]") of one of `types`, checking
 * its key per type; throws an Error whose message is the expectation, when it is not one.
 */
export function parsePublicKey(line: string, types: string[] = ADMIN_KEY_TYPES): PublicKey {
    const [type, text, ...comment] = line.trim().split(/\s+/);
    const expected = `an OpenSSH public key line ("<type> <base64> [comment]") with type one of ${types.join(", ")}`;
    if (!type || !text || !types.includes(type)) throw new Error(expected);
    let blob: Uint8Array;
    try {
        blob = base64.decode(text);
    } catch {
        throw new Error(`${expected}; its second part is not base64`);
    }
    try {
        checkBlob(type, blob);
    } catch (e) {
        if (e instanceof KeyError) throw new Error(`${expected}; ${e.message}`);
        throw e;
    }
    return { type, blob, comment: comment.join(" ") };
}

/** Why a line is not a usable key of `types`, or undefined when it is. */
export function publicKeyProblem(line: string, types: string[] = ADMIN_KEY_TYPES): string | undefined {
    let key: PublicKey;
    try {
        key = parsePublicKey(line, types);
    } catch (e) {
        return (e as Error).message;
    }
    const material = key.type === "ssh-ed25519" ? (blobs["ssh-ed25519"].decode(key.blob).key as Uint8Array) : undefined;
    if (key.comment.toLowerCase().includes("placeholder") || (material !== undefined && material.every((b) => b === 0))) {
        return "your own public key: this is the example host's placeholder (set blog.host.adminSshKeys in the host file)";
    }
    return undefined;
}

// openssh-key-v1 (OpenSSH PROTOCOL.key): the public keys are stored unencrypted before the private part.
const OPENSSH_MAGIC = "openssh-key-v1\0";
const opensshKey = P.struct({
    magic: P.bytes(OPENSSH_MAGIC.length),
    cipher: sshString,
    kdf: sshString,
    kdfOptions: sshBytes,
    count: P.U32BE,
    publicKey: sshBytes,
    rest: P.bytes(null),
});

/** The SSH blob of a public key node's crypto holds (RSA or ECDSA; ed25519 as its 32 bytes). */
function blobOf(jwk: Record<string, string | undefined>): Uint8Array {
    const bytes = (s: string | undefined) => base64urlnopad.decode(s ?? "");
    const positive = (b: Uint8Array) => ((b[0] & 0x80) !== 0 ? Uint8Array.from([0, ...b]) : b);
    if (jwk.kty === "RSA") return blobs["ssh-rsa"].encode({ type: "ssh-rsa", e: positive(bytes(jwk.e)), n: positive(bytes(jwk.n)) });
    if (jwk.kty === "OKP" && jwk.crv === "Ed25519") return blobs["ssh-ed25519"].encode({ type: "ssh-ed25519", key: bytes(jwk.x) });
    const curve = { "P-256": "nistp256", "P-384": "nistp384", "P-521": "nistp521" }[jwk.crv ?? ""];
    if (jwk.kty !== "EC" || !curve) throw new Error(`a private key of type RSA, ECDSA or ed25519 (got ${jwk.kty} ${jwk.crv ?? ""})`);
    return blobs.ecdsa.encode({ type: `ecdsa-sha2-${curve}`, curve, q: Uint8Array.from([4, ...bytes(jwk.x), ...bytes(jwk.y)]) });
}

/**
 * The public half of a private key file (OpenSSH's own format, or PEM): the key the deploy logs
 * in with when blog:sshPrivateKey is set. Throws when it cannot be read.
 */
export function publicKeyOfPrivate(privateKey: string): PublicKey {
    const pem = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]+?)-----END OPENSSH PRIVATE KEY-----/.exec(privateKey);
    let blob: Uint8Array;
    if (pem) {
        const file = opensshKey.decode(base64.decode(pem[1].replace(/\s+/g, "")));
        if (Buffer.from(file.magic).toString("latin1") !== OPENSSH_MAGIC || file.count !== 1) {
            throw new Error("an OpenSSH private key file with one key");
        }
        blob = file.publicKey;
    } else {
        blob = blobOf(createPublicKey(createPrivateKey(privateKey)).export({ format: "jwk" }) as Record<string, string>);
    }
    const type = sshString.decode(blob.subarray(0, 4 + new DataView(blob.buffer, blob.byteOffset).getUint32(0)));
    checkBlob(type, blob);
    return { type, blob, comment: "" };
}

/**
 * The age recipient (`age1…`) of an ssh-ed25519 public key line, as ssh-to-age computes it: the
 * Edwards point's Montgomery form (RFC 7748 section 4.1; @noble/curves `toMontgomery`), encoded
 * as age's X25519 recipient (bech32, BIP 173, not bech32m). sops-nix and agenix decrypt with the
 * host's SSH key converted the same way.
 */
export function ageRecipient(line: string): string {
    const key = parsePublicKey(line, ["ssh-ed25519"]);
    const point = blobs["ssh-ed25519"].decode(key.blob).key as Uint8Array;
    return bech32.encode("age", bech32.toWords(ed25519.utils.toMontgomery(point)));
}
