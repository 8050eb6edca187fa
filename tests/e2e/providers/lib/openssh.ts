// OpenSSH key encodings, written from the formats themselves: the public key blob and
// authorized_keys line (RFC 4253 6.6, RFC 5656 3.1, RFC 8709), fingerprints as ssh-keygen prints
// them, and the "openssh-key-v1" private key (OpenSSH's PROTOCOL.key), unencrypted, wrapped in PEM
// the way Go's encoding/pem does (64 columns) since terraform-provider-tls marshals it with
// golang.org/x/crypto/ssh MarshalPrivateKey and pem.EncodeToMemory.
import { KeyObject, createHash, randomBytes } from "crypto";

function u32(n: number): Buffer {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    return b;
}

function sshString(data: Buffer | string): Buffer {
    const b = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    return Buffer.concat([u32(b.length), b]);
}

/** An unsigned big-endian integer as an SSH mpint (no leading zeros, a zero byte if the top bit is set). */
function mpint(unsigned: Buffer): Buffer {
    let i = 0;
    while (i < unsigned.length && unsigned[i] === 0) i++;
    let b = unsigned.subarray(i);
    if (b.length > 0 && b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
    return sshString(b);
}

const b64url = (s: string | undefined): Buffer => Buffer.from(s ?? "", "base64url");

const CURVES: Record<string, { ssh: string; id: string }> = {
    "P-256": { ssh: "ecdsa-sha2-nistp256", id: "nistp256" },
    "P-384": { ssh: "ecdsa-sha2-nistp384", id: "nistp384" },
    "P-521": { ssh: "ecdsa-sha2-nistp521", id: "nistp521" },
};

/** Whether OpenSSH (and x/crypto/ssh) can encode this key: not ECDSA P-224. */
export function opensshSupported(key: KeyObject): boolean {
    if (key.asymmetricKeyType === "ec") return (key.asymmetricKeyDetails?.namedCurve ?? "") in { prime256v1: 1, secp384r1: 1, secp521r1: 1 };
    return key.asymmetricKeyType === "ed25519" || key.asymmetricKeyType === "rsa";
}

interface Encoded {
    type: string;
    blob: Buffer;
    /** The key-specific part of the private section (after the check integers, before the comment). */
    privateFields: Buffer;
}

function encode(privateKey: KeyObject): Encoded {
    const jwk = privateKey.export({ format: "jwk" });
    switch (privateKey.asymmetricKeyType) {
        case "ed25519": {
            const pub = b64url(jwk.x);
            const seed = b64url(jwk.d);
            const type = "ssh-ed25519";
            return {
                type,
                blob: Buffer.concat([sshString(type), sshString(pub)]),
                privateFields: Buffer.concat([sshString(type), sshString(pub), sshString(Buffer.concat([seed, pub]))]),
            };
        }
        case "rsa": {
            const type = "ssh-rsa";
            const [n, e, d, qi, p, q] = [jwk.n, jwk.e, jwk.d, jwk.qi, jwk.p, jwk.q].map(b64url);
            return {
                type,
                blob: Buffer.concat([sshString(type), mpint(e), mpint(n)]),
                privateFields: Buffer.concat([sshString(type), mpint(n), mpint(e), mpint(d), mpint(qi), mpint(p), mpint(q)]),
            };
        }
        case "ec": {
            const curve = CURVES[jwk.crv ?? ""];
            if (!curve) throw new Error(`OpenSSH has no encoding for ECDSA curve ${jwk.crv}`);
            const point = Buffer.concat([Buffer.from([4]), b64url(jwk.x), b64url(jwk.y)]);
            return {
                type: curve.ssh,
                blob: Buffer.concat([sshString(curve.ssh), sshString(curve.id), sshString(point)]),
                privateFields: Buffer.concat([sshString(curve.ssh), sshString(curve.id), sshString(point), mpint(b64url(jwk.d))]),
            };
        }
        default:
            throw new Error(`OpenSSH has no encoding for ${privateKey.asymmetricKeyType} keys`);
    }
}

/** `<type> <base64>\n`, as x/crypto/ssh MarshalAuthorizedKey writes it (no comment, a newline). */
export function authorizedKey(privateKey: KeyObject): string {
    const { type, blob } = encode(privateKey);
    return `${type} ${blob.toString("base64")}\n`;
}

export function fingerprintMd5(blob: Buffer): string {
    return (createHash("md5").update(blob).digest("hex").match(/../g) ?? []).join(":");
}

export function fingerprintSha256(blob: Buffer): string {
    return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

export function publicBlob(privateKey: KeyObject): Buffer {
    return encode(privateKey).blob;
}

/** PEM as Go's pem.EncodeToMemory writes it: 64 columns, a newline after the END line. */
export function pem(type: string, der: Buffer): string {
    const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
    return `-----BEGIN ${type}-----\n${lines.join("\n")}\n-----END ${type}-----\n`;
}

/** An unencrypted "openssh-key-v1" private key with an empty comment, in PEM. */
export function opensshPrivateKey(privateKey: KeyObject): string {
    const { blob, privateFields } = encode(privateKey);
    const check = randomBytes(4);
    let section = Buffer.concat([check, check, privateFields, sshString("")]);
    const pad: number[] = [];
    for (let i = 1; (section.length + pad.length) % 8 !== 0; i++) pad.push(i);
    section = Buffer.concat([section, Buffer.from(pad)]);
    const body = Buffer.concat([
        Buffer.from("openssh-key-v1\0", "binary"),
        sshString("none"),
        sshString("none"),
        sshString(""),
        u32(1),
        sshString(blob),
        sshString(section),
    ]);
    return pem("OPENSSH PRIVATE KEY", body);
}

/** An authorized_keys line's type and blob, or undefined when it is not a well-formed public key. */
export function parsePublicKey(line: string): { type: string; blob: Buffer } | undefined {
    const [type, data] = line.trim().split(/\s+/);
    if (!type || !data || !/^[A-Za-z0-9+/]+={0,2}$/.test(data)) return undefined;
    const blob = Buffer.from(data, "base64");
    if (blob.length < 4) return undefined;
    const len = blob.readUInt32BE(0);
    if (4 + len > blob.length || blob.subarray(4, 4 + len).toString("latin1") !== type) return undefined;
    return { type, blob };
}
