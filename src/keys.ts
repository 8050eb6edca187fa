/** OpenSSH public key lines: what the host facts and the stack config accept. */
const KEY_TYPES = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/** Why a line is not a usable OpenSSH public key, or undefined when it is. */
export function publicKeyProblem(line: string): string | undefined {
    const [type, blob, ...comment] = line.trim().split(/\s+/);
    const expected = `an OpenSSH public key line ("<type> <base64> [comment]") with type one of ${KEY_TYPES.join(", ")}`;
    if (!type || !blob || !KEY_TYPES.includes(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) return expected;
    const bytes = Buffer.from(blob, "base64");
    const nameLength = bytes.length >= 4 ? bytes.readUInt32BE(0) : -1;
    if (nameLength < 0 || bytes.subarray(4, 4 + nameLength).toString("latin1") !== type) {
        return `${expected}; its base64 part does not encode a ${type} key`;
    }
    const material = bytes.subarray(4 + nameLength);
    if (comment.join(" ").toLowerCase().includes("placeholder") || material.subarray(4).every((b) => b === 0)) {
        return "your own public key: this is the example host's placeholder (set blog.host.adminSshKeys in the host file)";
    }
    return undefined;
}


/** Curve25519's field prime, 2^255 - 19. */
const P = (1n << 255n) - 19n;

function modPow(base: bigint, exp: bigint): bigint {
    let result = 1n;
    let b = base % P;
    for (let e = exp; e > 0n; e >>= 1n) {
        if (e & 1n) result = (result * b) % P;
        b = (b * b) % P;
    }
    return result;
}

const BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

function bech32Polymod(values: number[]): number {
    const generator = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let chk = 1;
    for (const v of values) {
        const top = chk >>> 25;
        chk = ((chk & 0x1ffffff) << 5) ^ v;
        for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= generator[i];
    }
    return chk >>> 0;
}

/** BIP 173 bech32 (not bech32m), which age uses for its keys. */
function bech32(hrp: string, data: Buffer): string {
    const words: number[] = [];
    let acc = 0;
    let bits = 0;
    for (const byte of data) {
        acc = (acc << 8) | byte;
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            words.push((acc >>> bits) & 31);
        }
    }
    if (bits > 0) words.push((acc << (5 - bits)) & 31);
    const expanded = [...[...hrp].map((c) => c.charCodeAt(0) >> 5), 0, ...[...hrp].map((c) => c.charCodeAt(0) & 31)];
    const polymod = bech32Polymod([...expanded, ...words, 0, 0, 0, 0, 0, 0]) ^ 1;
    const checksum = [0, 1, 2, 3, 4, 5].map((i) => (polymod >>> (5 * (5 - i))) & 31);
    return `${hrp}1${[...words, ...checksum].map((w) => BECH32[w]).join("")}`;
}

/**
 * The age recipient (`age1…`) of an ssh-ed25519 public key line, as ssh-to-age computes it: the
 * Edwards point's Montgomery form u = (1 + y) / (1 - y) mod p (RFC 7748, section 4.1), encoded as
 * age's X25519 recipient. sops-nix and agenix decrypt with the host's SSH key converted the same way.
 */
export function ageRecipient(line: string): string {
    const [type, blob] = line.trim().split(/\s+/);
    if (type !== "ssh-ed25519") throw new Error(`an ssh-ed25519 key line is needed for an age recipient, got ${type}`);
    const bytes = Buffer.from(blob, "base64");
    const nameLength = bytes.readUInt32BE(0);
    const key = bytes.subarray(8 + nameLength, 8 + nameLength + 32);
    // y is little-endian; the top bit is the sign of x, which the Montgomery u does not need.
    const yBytes = Buffer.from(key);
    yBytes[31] &= 0x7f;
    const y = BigInt(`0x${Buffer.from(yBytes).reverse().toString("hex")}`);
    const u = ((1n + y) * modPow((1n - y + P) % P, P - 2n)) % P;
    const uBytes = Buffer.from(u.toString(16).padStart(64, "0"), "hex").reverse();
    return bech32("age", uBytes);
}
