// Stand-in for pulumi-resource-tls (@pulumi/tls 5.6.1): `tls:index/privateKey:PrivateKey`, with real
// keys from Node's crypto, and `tls:index/certRequest:CertRequest`, a real certificate signing
// request signed by the given key. Modelled on hashicorp/terraform-provider-tls v4.2.1:
//   internal/provider/resource_private_key.go   PrivateKey's schema and Create
//   internal/provider/common_key.go             setPublicKeyAttributes; parsePrivateKeyPEM and
//                                               privateKeyToAlgorithm (CertRequest's key, its errors)
//   internal/provider/common.go                 hashForState (the ids); requireReplaceIfStateContainsPEMString
//   internal/provider/resource_cert_request.go  CertRequest's schema (what replaces), Create (x509.
//                                               CreateCertificateRequest: see lib/x509.ts), no-op Read,
//                                               Update from the plan, no-op Delete
//   internal/provider/common_cert.go            createSubjectDistinguishedNames
// as pulumi/pulumi-tls bridges it (provider/cmd/pulumi-resource-tls/schema.json at f7db93b: the
// secret outputs; CertRequest's `subject` block is a single object).
import { KeyObject, createHash, createPrivateKey, createPublicKey, generateKeyPairSync } from "crypto";
import { isIP } from "net";
import { resourceFailure } from "./lib/bridge";
import { Ctx, ResourceType, serve } from "./lib/host";
import { pinnedVersion } from "./lib/repo";
import { DiffKind, Props, UNKNOWN, arr, containsUnknown, deepEqual, isUnknown, num, obj, objectDiff, str } from "./lib/values";
import { Subject, createCsr } from "./lib/x509";
import { authorizedKey, fingerprintMd5, fingerprintSha256, opensshPrivateKey, opensshSupported, pem, publicBlob } from "./lib/openssh";

// hashicorp/terraform-provider-tls v4.2.1 internal/provider/resource_private_key.go: `algorithm` (required), `rsa_bits` (default 2048) and `ecdsa_curve`
// (default "P224") all carry RequiresReplace; every other attribute is computed.
const ALGORITHMS = ["RSA", "ECDSA", "ED25519"];
const CURVES: Record<string, string> = { P224: "secp224r1", P256: "prime256v1", P384: "secp384r1", P521: "secp521r1" };
const DEFAULTS = { rsaBits: 2048, ecdsaCurve: "P224" };
const REPLACE_ON = ["algorithm", "rsaBits", "ecdsaCurve"];
// pulumi/pulumi-tls f7db93b provider/cmd/pulumi-resource-tls/schema.json: privateKeyOpenssh, privateKeyPem, privateKeyPemPkcs8 are `"secret": true`.
const SECRET_OUTPUTS = ["privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"];
const COMPUTED = [
    "privateKeyOpenssh",
    "privateKeyPem",
    "privateKeyPemPkcs8",
    "publicKeyFingerprintMd5",
    "publicKeyFingerprintSha256",
    "publicKeyOpenssh",
    "publicKeyPem",
];

/** strings.TrimSpace on bytes read as UTF-8, as hashForState applies it to the DER public key. */
function goTrimSpace(b: Buffer): Buffer {
    const spaceAt = (i: number, dir: 1 | -1): number => {
        // Length of a whitespace rune starting (dir 1) or ending (dir -1) at i, else 0.
        const ascii = [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20];
        if (ascii.includes(b[i])) return 1;
        const two = dir === 1 ? b.subarray(i, i + 2) : b.subarray(i - 1, i + 1);
        if (two.length === 2 && two[0] === 0xc2 && (two[1] === 0x85 || two[1] === 0xa0)) return 2;
        const three = dir === 1 ? b.subarray(i, i + 3) : b.subarray(i - 2, i + 1);
        if (three.length === 3) {
            const cp = ((three[0] & 0x0f) << 12) | ((three[1] & 0x3f) << 6) | (three[2] & 0x3f);
            const valid = (three[0] & 0xf0) === 0xe0 && (three[1] & 0xc0) === 0x80 && (three[2] & 0xc0) === 0x80;
            const spaces = [0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000];
            if (valid && (spaces.includes(cp) || (cp >= 0x2000 && cp <= 0x200a))) return 3;
        }
        return 0;
    };
    let start = 0;
    let end = b.length;
    for (let n = spaceAt(start, 1); start < end && n > 0; n = spaceAt(start, 1)) start += n;
    for (let n = spaceAt(end - 1, -1); end > start && n > 0; n = spaceAt(end - 1, -1)) end -= n;
    return b.subarray(start, end);
}

function generate(algorithm: string, rsaBits: number, ecdsaCurve: string): KeyObject {
    switch (algorithm) {
        case "RSA":
            return generateKeyPairSync("rsa", { modulusLength: rsaBits }).privateKey;
        case "ECDSA":
            return generateKeyPairSync("ec", { namedCurve: CURVES[ecdsaCurve] }).privateKey;
        default:
            return generateKeyPairSync("ed25519").privateKey;
    }
}

/** Every computed attribute of a new key (Create, then setPublicKeyAttributes). */
function keyAttributes(key: KeyObject): { id: string; outs: Props } {
    const der = (k: KeyObject, type: "pkcs1" | "pkcs8" | "sec1" | "spki") => k.export({ format: "der", type }) as Buffer;
    const publicKey = createPublicKey(key);
    const spki = der(publicKey, "spki");
    const privatePem =
        key.asymmetricKeyType === "rsa"
            ? pem("RSA PRIVATE KEY", der(key, "pkcs1"))
            : key.asymmetricKeyType === "ec"
              ? pem("EC PRIVATE KEY", der(key, "sec1"))
              : pem("PRIVATE KEY", der(key, "pkcs8"));
    const ssh = opensshSupported(key);
    const blob = ssh ? publicBlob(key) : undefined;
    return {
        id: createHash("sha1").update(goTrimSpace(spki)).digest("hex"),
        outs: {
            privateKeyPem: privatePem,
            privateKeyPemPkcs8: pem("PRIVATE KEY", der(key, "pkcs8")),
            privateKeyOpenssh: ssh ? opensshPrivateKey(key) : "",
            publicKeyPem: pem("PUBLIC KEY", spki),
            publicKeyOpenssh: ssh ? authorizedKey(key) : "",
            publicKeyFingerprintMd5: blob ? fingerprintMd5(blob) : "",
            publicKeyFingerprintSha256: blob ? fingerprintSha256(blob) : "",
        },
    };
}

/** The planned attributes: configuration plus the schema's defaults. */
function planned(news: Props): Props {
    return {
        algorithm: news.algorithm,
        rsaBits: news.rsaBits ?? DEFAULTS.rsaBits,
        ecdsaCurve: news.ecdsaCurve ?? DEFAULTS.ecdsaCurve,
    };
}

const privateKey: ResourceType = {
    secretOutputs: SECRET_OUTPUTS,

    check(ctx: Ctx, _olds: Props, news: Props) {
        const failures = [];
        const algorithm = str(news.algorithm);
        if (algorithm !== undefined && !ALGORITHMS.includes(algorithm)) {
            failures.push(
                resourceFailure(
                    `Invalid Attribute Value Match. Attribute algorithm value must be one of: ["RSA" "ECDSA" "ED25519"], got: "${algorithm}"`,
                    ctx.name,
                    "algorithm",
                ),
            );
        }
        const curve = str(news.ecdsaCurve);
        if (curve !== undefined && !(curve in CURVES)) {
            failures.push(
                resourceFailure(
                    `Invalid Attribute Value Match. Attribute ecdsa_curve value must be one of: ["P224" "P256" "P384" "P521"], got: "${curve}"`,
                    ctx.name,
                    "ecdsaCurve",
                ),
            );
        }
        // The plugin-framework bridge applies no Terraform defaults at Check: the inputs stay as given.
        return { inputs: news, failures };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const plan = planned(news);
        const detailedDiff: Record<string, DiffKind> = {};
        for (const k of REPLACE_ON) {
            if (!deepEqual(olds[k], plan[k]) || plan[k] === UNKNOWN) detailedDiff[k] = "update-replace";
        }
        return { changes: Object.keys(detailedDiff).length > 0, detailedDiff };
    },

    async create(_ctx, news, preview) {
        const plan = planned(news);
        if (preview) {
            return { id: "", outs: { ...plan, ...Object.fromEntries(COMPUTED.map((k) => [k, UNKNOWN])) } };
        }
        const key = generate(str(plan.algorithm) ?? "ED25519", num(plan.rsaBits) ?? DEFAULTS.rsaBits, str(plan.ecdsaCurve) ?? DEFAULTS.ecdsaCurve);
        const { id, outs } = keyAttributes(key);
        return { id, outs: { ...plan, ...outs } };
    },

    // Read is a no-op upstream: everything there is to read is in the state.
    async read(_ctx, id, state, inputs) {
        return { id, props: state, inputs };
    },

    // Update is a no-op upstream: every configurable attribute replaces the key.
    async update(_ctx, _id, olds) {
        return olds;
    },

    async delete() {
        // Nothing to delete: the key lives in the state only.
    },
};

// ---------------------------------------------------------------------------------------------
// CertRequest (internal/provider/resource_cert_request.go, plugin framework)

// resource_cert_request.go: dns_names, ip_addresses, uris and every field of the `subject` block
// carry RequiresReplace; private_key_pem replaces only when the state holds a PEM
// (requireReplaceIfStateContainsPEMString); key_algorithm, cert_request_pem and id are computed
// (UseStateForUnknown).
const CSR_REPLACE_ON = ["dnsNames", "ipAddresses", "uris"];
const STATE_PEM = /^-----BEGIN [A-Za-z ]+-----\n(.|\s)+\n-----END [A-Za-z ]+-----\n?$/;
// pulumi/pulumi-tls f7db93b schema.json: privateKeyPem is `"secret": true`.
const CSR_SECRET_OUTPUTS = ["privateKeyPem"];

/** The `subject` object's fields, as createSubjectDistinguishedNames reads them. */
function subjectOf(v: unknown): Subject {
    const o = obj(v) ?? {};
    return {
        commonName: str(o.commonName),
        organization: str(o.organization),
        organizationalUnit: str(o.organizationalUnit),
        streetAddresses: arr(o.streetAddresses)?.map(String),
        locality: str(o.locality),
        province: str(o.province),
        country: str(o.country),
        postalCode: str(o.postalCode),
        serialNumber: str(o.serialNumber),
        emailAddress: str(o.emailAddress),
    };
}

const PEM_PREAMBLES = ["PUBLIC KEY", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "CERTIFICATE", "CERTIFICATE REQUEST"];
const KEY_PARSERS: Record<string, "pkcs1" | "sec1" | "pkcs8"> = { "RSA PRIVATE KEY": "pkcs1", "EC PRIVATE KEY": "sec1", "PRIVATE KEY": "pkcs8" };
const KEY_ALGORITHMS: Record<string, string> = { rsa: "RSA", ec: "ECDSA", ed25519: "ED25519" };

/** common_key.go parsePrivateKeyPEM: the first PEM block, its preamble, its parser, the key's algorithm. */
function parsePrivateKeyPem(text: string): { key: KeyObject; algorithm: string } {
    const m = /-----BEGIN ([^-\n]+)-----\r?\n([\s\S]*?)-----END \1-----/.exec(text);
    if (!m) throw new Error(`failed to decode PEM block: decoded bytes 0, undecoded ${Buffer.byteLength(text)}`);
    const preamble = m[1];
    if (!PEM_PREAMBLES.includes(preamble)) throw new Error(`unsupported PEM preamble/type: ${preamble}`);
    const type = KEY_PARSERS[preamble];
    if (!type) throw new Error(`unable to determine parser for PEM preamble: ${preamble}`);
    let key: KeyObject;
    try {
        key = createPrivateKey({ key: Buffer.from(m[2].replace(/\s+/g, ""), "base64"), format: "der", type });
    } catch (e) {
        throw new Error(`failed to parse private key given PEM preamble '${preamble}': ${(e as Error).message}`);
    }
    const algorithm = KEY_ALGORITHMS[key.asymmetricKeyType ?? ""];
    if (!algorithm) throw new Error(`failed to determine key algorithm for private key of type ${key.asymmetricKeyType}: unsupported private key type`);
    return { key, algorithm };
}

/** A plugin-framework error as the bridge reports it: "summary: detail". */
const frameworkError = (summary: string, detail: string) => new Error(`${summary}: ${detail}`);

/** The state's inputs: what the configuration set (the write-only attributes are never stored). */
function certRequestInputs(news: Props): Props {
    const out: Props = {};
    for (const k of ["privateKeyPem", "dnsNames", "ipAddresses", "uris", "subject"]) if (news[k] !== undefined && news[k] !== null) out[k] = news[k];
    return out;
}

const certRequest: ResourceType = {
    secretOutputs: CSR_SECRET_OUTPUTS,

    check(ctx: Ctx, _olds: Props, news: Props) {
        const failures = [];
        for (const [k, tf] of [
            ["ipAddresses", "ip_addresses"],
            ["uris", "uris"],
        ] as const) {
            (arr(news[k]) ?? []).forEach((v, i) => {
                if (v === "") {
                    failures.push(
                        resourceFailure(`Invalid Attribute Value Length. Attribute ${tf}[${i}] string length must be at least 1, got: 0`, ctx.name, `${k}[${i}]`),
                    );
                }
            });
        }
        if (news.privateKeyPem === undefined && news.privateKeyPemWo !== undefined) {
            // Not in terraform-provider-tls v4.2.1; @pulumi/tls 5.6.1 has it, the stand-in does not.
            failures.push({ reason: "the stand-in tls provider does not model privateKeyPemWo: give privateKeyPem" });
        }
        return { inputs: news, failures };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const detailedDiff: Record<string, DiffKind> = {};
        const same = (a: unknown, b: unknown) => !containsUnknown(b) && deepEqual(a ?? null, b ?? null);
        if (!same(olds.privateKeyPem, news.privateKeyPem)) {
            detailedDiff.privateKeyPem = STATE_PEM.test(str(olds.privateKeyPem) ?? "") ? "update-replace" : "update";
        }
        for (const k of CSR_REPLACE_ON) {
            if (same(olds[k], news[k])) continue;
            detailedDiff[k] = olds[k] === undefined || olds[k] === null ? "add-replace" : news[k] === undefined || news[k] === null ? "delete-replace" : "update-replace";
        }
        if (!same(olds.subject, news.subject)) {
            const paths = isUnknown(news.subject) ? { subject: "update" as DiffKind } : objectDiff({ subject: olds.subject }, { subject: news.subject });
            for (const [p, kind] of Object.entries(paths)) detailedDiff[p] = kind.endsWith("-replace") ? kind : (`${kind}-replace` as DiffKind);
        }
        return { changes: Object.keys(detailedDiff).length > 0, detailedDiff };
    },

    async create(_ctx, news, preview) {
        const inputs = certRequestInputs(news);
        if (preview) return { id: "", outs: { ...inputs, keyAlgorithm: UNKNOWN, certRequestPem: UNKNOWN } };
        let parsed: { key: KeyObject; algorithm: string };
        try {
            parsed = parsePrivateKeyPem(String(news.privateKeyPem ?? ""));
        } catch (e) {
            throw frameworkError("Failed to parse private key PEM", (e as Error).message);
        }
        const ipAddresses = (arr(news.ipAddresses) ?? []).map(String);
        for (const ip of ipAddresses) if (!isIP(ip)) throw frameworkError("Invalid IP address", `Failed to parse ${JSON.stringify(ip)}`);
        const der = createCsr(
            {
                subject: news.subject === undefined || news.subject === null ? undefined : subjectOf(news.subject),
                dnsNames: (arr(news.dnsNames) ?? []).map(String),
                ipAddresses,
                uris: (arr(news.uris) ?? []).map(String),
            },
            parsed.key,
        );
        return {
            // hashForState(string(certReqBytes)): SHA-1 of the DER, trimmed as a string.
            id: createHash("sha1").update(goTrimSpace(der)).digest("hex"),
            outs: { ...inputs, keyAlgorithm: parsed.algorithm, certRequestPem: pem("CERTIFICATE REQUEST", der) },
        };
    },

    // Read is a no-op upstream: everything there is to read is in the state.
    async read(_ctx, id, state, inputs) {
        return { id, props: state, inputs };
    },

    // updatedUsingPlan: the plan (the configuration, the computed values kept) becomes the state.
    async update(_ctx, _id, olds, news) {
        return { ...certRequestInputs(news), keyAlgorithm: olds.keyAlgorithm, certRequestPem: olds.certRequestPem };
    },

    async delete() {
        // Nothing to delete: the request lives in the state only.
    },
};

serve(
    {
        name: "tls",
        version: pinnedVersion("tls"),
        resources: { "tls:index/privateKey:PrivateKey": privateKey, "tls:index/certRequest:CertRequest": certRequest },
        functions: {},
    },
    process.argv.slice(2),
);
