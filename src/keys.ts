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

