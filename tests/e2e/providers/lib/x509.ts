// X.509 written from the formats themselves (RFC 5280 certificates, RFC 2986 certificate
// requests, X.690 DER), because Node.js can sign bytes but not certificates: the tls stand-in's
// CertRequest (encoded as Go's crypto/x509 CreateCertificateRequest encodes it, which is what
// terraform-provider-tls calls) and the cloudflare stand-in's Origin CA (which reads a request,
// checks its signature and issues a certificate for its public key).
import { KeyObject, createHash, createPublicKey, randomBytes, sign, verify } from "crypto";
import { isIPv4 } from "net";

// ---------------------------------------------------------------------------------------------
// DER (X.690 10): tag, definite length, contents.

const TAG = {
    BOOLEAN: 0x01,
    INTEGER: 0x02,
    BIT_STRING: 0x03,
    OCTET_STRING: 0x04,
    NULL: 0x05,
    OID: 0x06,
    UTF8_STRING: 0x0c,
    PRINTABLE_STRING: 0x13,
    IA5_STRING: 0x16,
    UTC_TIME: 0x17,
    GENERALIZED_TIME: 0x18,
    SEQUENCE: 0x30,
    SET: 0x31,
};

function length(n: number): Buffer {
    if (n < 0x80) return Buffer.from([n]);
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
    return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, contents: Buffer): Buffer {
    return Buffer.concat([Buffer.from([tag]), length(contents.length), contents]);
}

const seq = (...items: Buffer[]) => tlv(TAG.SEQUENCE, Buffer.concat(items));
/** SET OF: DER orders the elements by their encodings (X.690 11.6), as Go's encoding/asn1 does. */
const set = (...items: Buffer[]) => tlv(TAG.SET, Buffer.concat([...items].sort(Buffer.compare)));
/** A context-specific tag: constructed (EXPLICIT, or IMPLICIT of a constructed type) or primitive. */
const context = (n: number, contents: Buffer, constructed = true) => tlv((constructed ? 0xa0 : 0x80) | n, contents);

function oid(dotted: string): Buffer {
    const parts = dotted.split(".").map(Number);
    const bytes = [40 * parts[0] + parts[1]];
    for (const p of parts.slice(2)) {
        const chunk: number[] = [];
        for (let v = p; ; v = Math.floor(v / 128)) {
            chunk.unshift((v % 128) | (chunk.length ? 0x80 : 0));
            if (v < 128) break;
        }
        bytes.push(...chunk);
    }
    return tlv(TAG.OID, Buffer.from(bytes));
}

/** A non-negative INTEGER from its unsigned big-endian bytes. */
function uint(unsigned: Buffer): Buffer {
    let i = 0;
    while (i < unsigned.length - 1 && unsigned[i] === 0) i++;
    let b = unsigned.subarray(i);
    if (b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
    return tlv(TAG.INTEGER, b);
}

const smallInt = (n: number) => uint(Buffer.from([n]));
const bitString = (bytes: Buffer, unusedBits = 0) => tlv(TAG.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), bytes]));
const octetString = (bytes: Buffer) => tlv(TAG.OCTET_STRING, bytes);
const NULL = tlv(TAG.NULL, Buffer.alloc(0));

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; seconds, Z. */
function time(d: Date): Buffer {
    const iso = d.toISOString().replace(/\.\d+Z$/, "Z").replace(/[-:T]/g, "");
    return d.getUTCFullYear() < 2050 ? tlv(TAG.UTC_TIME, Buffer.from(iso.slice(2), "ascii")) : tlv(TAG.GENERALIZED_TIME, Buffer.from(iso, "ascii"));
}

/** One parsed DER element: its tag, its contents, and the whole encoding. */
export interface Der {
    tag: number;
    contents: Buffer;
    raw: Buffer;
}

function readOne(buf: Buffer, at: number): Der & { end: number } {
    if (at + 2 > buf.length) throw new Error("asn1: truncated element");
    const tag = buf[at];
    let len = buf[at + 1];
    let start = at + 2;
    if (len & 0x80) {
        const n = len & 0x7f;
        if (n === 0 || n > 4 || start + n > buf.length) throw new Error("asn1: bad length");
        len = 0;
        for (let i = 0; i < n; i++) len = len * 256 + buf[start + i];
        start += n;
    }
    const end = start + len;
    if (end > buf.length) throw new Error("asn1: truncated element");
    return { tag, contents: buf.subarray(start, end), raw: buf.subarray(at, end), end };
}

/** Parses exactly one element (nothing may follow it). */
export function parseDer(buf: Buffer): Der {
    const one = readOne(buf, 0);
    if (one.end !== buf.length) throw new Error("asn1: trailing data");
    return one;
}

/** The elements inside a constructed element. */
export function children(el: Der): Der[] {
    const out: Der[] = [];
    for (let at = 0; at < el.contents.length; ) {
        const one = readOne(el.contents, at);
        out.push(one);
        at = one.end;
    }
    return out;
}

function oidString(el: Der): string {
    const b = el.contents;
    const parts = [Math.floor(b[0] / 40), b[0] % 40];
    let v = 0;
    for (const byte of b.subarray(1)) {
        v = v * 128 + (byte & 0x7f);
        if (!(byte & 0x80)) {
            parts.push(v);
            v = 0;
        }
    }
    return parts.join(".");
}

// ---------------------------------------------------------------------------------------------
// Names and keys

/** Attribute type OIDs of the distinguished-name fields (RFC 5280 appendix A; PKCS #9 e-mail). */
const OID = {
    country: "2.5.4.6",
    province: "2.5.4.8",
    locality: "2.5.4.7",
    streetAddress: "2.5.4.9",
    postalCode: "2.5.4.17",
    organization: "2.5.4.10",
    organizationalUnit: "2.5.4.11",
    commonName: "2.5.4.3",
    serialNumber: "2.5.4.5",
    emailAddress: "1.2.840.113549.1.9.1",
    extensionRequest: "1.2.840.113549.1.9.14",
    subjectAltName: "2.5.29.17",
    keyUsage: "2.5.29.15",
    extKeyUsage: "2.5.29.37",
    basicConstraints: "2.5.29.19",
    subjectKeyId: "2.5.29.14",
    authorityKeyId: "2.5.29.35",
    serverAuth: "1.3.6.1.5.5.7.3.1",
    clientAuth: "1.3.6.1.5.5.7.3.2",
    sha256WithRSA: "1.2.840.113549.1.1.11",
    sha384WithRSA: "1.2.840.113549.1.1.12",
    sha512WithRSA: "1.2.840.113549.1.1.13",
    ecdsaWithSHA256: "1.2.840.10045.4.3.2",
    ecdsaWithSHA384: "1.2.840.10045.4.3.3",
    ecdsaWithSHA512: "1.2.840.10045.4.3.4",
    ed25519: "1.3.101.112",
};

/** Go's encoding/asn1 isPrintable with asterisks allowed (what Marshal uses for a string). */
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?*]*$/;

function directoryString(value: string): Buffer {
    return PRINTABLE.test(value) ? tlv(TAG.PRINTABLE_STRING, Buffer.from(value, "ascii")) : tlv(TAG.UTF8_STRING, Buffer.from(value, "utf8"));
}

/** A distinguished name's fields, as tls.CertRequest's `subject` has them. */
export interface Subject {
    commonName?: string;
    organization?: string;
    organizationalUnit?: string;
    streetAddresses?: string[];
    locality?: string;
    province?: string;
    country?: string;
    postalCode?: string;
    serialNumber?: string;
    emailAddress?: string;
}

/**
 * The Name as Go's pkix.Name.ToRDNSequence orders it (C, ST, L, STREET, PostalCode, O, OU, CN,
 * SERIALNUMBER, then ExtraNames: the e-mail address, an IA5String), one RDN per attribute type;
 * an empty CommonName or SerialNumber is left out, a list holding "" is not.
 */
export function encodeName(s: Subject): Buffer {
    const rdn = (type: string, values: Buffer[]) => set(...values.map((v) => seq(oid(type), v)));
    const rdns: Buffer[] = [];
    const list = (type: string, values: string[] | undefined) => {
        if (values && values.length > 0) rdns.push(rdn(type, values.map(directoryString)));
    };
    const one = (v: string | undefined) => (v === undefined ? undefined : [v]);
    list(OID.country, one(s.country));
    list(OID.province, one(s.province));
    list(OID.locality, one(s.locality));
    list(OID.streetAddress, s.streetAddresses);
    list(OID.postalCode, one(s.postalCode));
    list(OID.organization, one(s.organization));
    list(OID.organizationalUnit, one(s.organizationalUnit));
    if (s.commonName) rdns.push(rdn(OID.commonName, [directoryString(s.commonName)]));
    if (s.serialNumber) rdns.push(rdn(OID.serialNumber, [directoryString(s.serialNumber)]));
    if (s.emailAddress !== undefined) rdns.push(rdn(OID.emailAddress, [tlv(TAG.IA5_STRING, Buffer.from(s.emailAddress, "ascii"))]));
    return seq(...rdns);
}

/** The signature algorithm Go's x509 picks for a key (signingParamsForKey) and Node's digest for it. */
function signingParams(key: KeyObject): { algorithm: Buffer; digest: string | null } {
    switch (key.asymmetricKeyType) {
        case "rsa":
            return { algorithm: seq(oid(OID.sha256WithRSA), NULL), digest: "sha256" };
        case "ec": {
            const curve = key.asymmetricKeyDetails?.namedCurve;
            if (curve === "secp384r1") return { algorithm: seq(oid(OID.ecdsaWithSHA384)), digest: "sha384" };
            if (curve === "secp521r1") return { algorithm: seq(oid(OID.ecdsaWithSHA512)), digest: "sha512" };
            return { algorithm: seq(oid(OID.ecdsaWithSHA256)), digest: "sha256" };
        }
        case "ed25519":
            return { algorithm: seq(oid(OID.ed25519)), digest: null };
        default:
            throw new Error(`x509: unsupported key type ${key.asymmetricKeyType}`);
    }
}

function signed(tbs: Buffer, key: KeyObject): Buffer {
    const { algorithm, digest } = signingParams(key);
    return seq(tbs, algorithm, bitString(sign(digest, tbs, key)));
}

function spkiOf(key: KeyObject): Buffer {
    return (key.type === "private" ? createPublicKey(key) : key).export({ format: "der", type: "spki" }) as Buffer;
}

/** subjectAltName's GeneralNames: dNSName [2], uniformResourceIdentifier [6], iPAddress [7] (4 or 16 bytes). */
function generalNames(dnsNames: string[], ipAddresses: string[], uris: string[]): Buffer {
    const names: Buffer[] = [];
    for (const d of dnsNames) names.push(context(2, Buffer.from(d, "ascii"), false));
    for (const ip of ipAddresses) names.push(context(7, ipBytes(ip), false));
    for (const u of uris) names.push(context(6, Buffer.from(u, "ascii"), false));
    return seq(...names);
}

/** An IP address's bytes (Go's marshalSANs: To4() when it is an IPv4 address, else the 16 bytes). */
function ipBytes(ip: string): Buffer {
    if (isIPv4(ip)) return Buffer.from(ip.split(".").map(Number));
    const v4mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    if (v4mapped) return Buffer.from(v4mapped[1].split(".").map(Number));
    const [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
    const words = (s: string | undefined) => (s ? s.split(":") : []);
    const h = words(head);
    const t = words(tail);
    const all = tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill("0"), ...t];
    const out = Buffer.alloc(16);
    all.forEach((w, i) => out.writeUInt16BE(parseInt(w, 16), 2 * i));
    return out;
}

const extension = (id: string, value: Buffer, critical = false) =>
    seq(oid(id), ...(critical ? [tlv(TAG.BOOLEAN, Buffer.from([0xff]))] : []), octetString(value));

// ---------------------------------------------------------------------------------------------
// Certificate requests (RFC 2986)

export interface CsrTemplate {
    subject?: Subject;
    dnsNames?: string[];
    ipAddresses?: string[];
    uris?: string[];
}

/**
 * A CSR in DER, as Go's x509.CreateCertificateRequest writes it: version 0, the subject, the
 * public key, attributes [0] holding one extensionRequest with a non-critical subjectAltName when
 * there are DNS names, IP addresses or URIs (and an empty [0] otherwise), signed with the
 * algorithm Go picks for the key.
 */
export function createCsr(t: CsrTemplate, key: KeyObject): Buffer {
    const dns = t.dnsNames ?? [];
    const ips = t.ipAddresses ?? [];
    const uris = t.uris ?? [];
    const attributes: Buffer[] = [];
    if (dns.length + ips.length + uris.length > 0) {
        const extensions = seq(extension(OID.subjectAltName, generalNames(dns, ips, uris)));
        attributes.push(seq(oid(OID.extensionRequest), set(extensions)));
    }
    const info = seq(smallInt(0), encodeName(t.subject ?? {}), spkiOf(key), context(0, Buffer.concat(attributes)));
    return signed(info, key);
}

export interface ParsedCsr {
    /** The requester's public key. */
    publicKey: KeyObject;
    /** Its SubjectPublicKeyInfo, as the request carries it. */
    spki: Buffer;
    subject: Buffer;
    dnsNames: string[];
}

const VERIFY_DIGEST: Record<string, string | null> = {
    [OID.sha256WithRSA]: "sha256",
    [OID.sha384WithRSA]: "sha384",
    [OID.sha512WithRSA]: "sha512",
    [OID.ecdsaWithSHA256]: "sha256",
    [OID.ecdsaWithSHA384]: "sha384",
    [OID.ecdsaWithSHA512]: "sha512",
    [OID.ed25519]: null,
};

/** Reads a CSR (PEM) and checks its self-signature; throws when it is not a well-formed, signed request. */
export function parseCsr(pemText: string): ParsedCsr {
    const m = /-----BEGIN (NEW )?CERTIFICATE REQUEST-----([\s\S]*?)-----END (NEW )?CERTIFICATE REQUEST-----/.exec(pemText);
    if (!m) throw new Error("no CERTIFICATE REQUEST PEM block");
    const der = Buffer.from(m[2].replace(/\s+/g, ""), "base64");
    const [info, algorithm, signature] = children(parseDer(der));
    if (!info || !algorithm || !signature || info.tag !== TAG.SEQUENCE || signature.tag !== TAG.BIT_STRING) throw new Error("malformed certificate request");
    const [version, subject, spki, attributes] = children(info);
    if (!version || version.tag !== TAG.INTEGER || !subject || !spki) throw new Error("malformed certificate request info");
    const publicKey = createPublicKey({ key: spki.raw, format: "der", type: "spki" });
    const algOid = oidString(children(algorithm)[0]);
    if (!(algOid in VERIFY_DIGEST)) throw new Error(`unsupported signature algorithm ${algOid}`);
    if (!verify(VERIFY_DIGEST[algOid], info.raw, publicKey, signature.contents.subarray(1))) throw new Error("certificate request signature does not verify");
    const dnsNames: string[] = [];
    for (const attr of attributes ? children(attributes) : []) {
        const [type, values] = children(attr);
        if (oidString(type) !== OID.extensionRequest) continue;
        for (const ext of children(children(values)[0])) {
            const parts = children(ext);
            if (oidString(parts[0]) !== OID.subjectAltName) continue;
            const value = parts[parts.length - 1].contents;
            for (const name of children(parseDer(value))) if (name.tag === 0x82) dnsNames.push(name.contents.toString("ascii"));
        }
    }
    return { publicKey, spki: spki.raw, subject: subject.raw, dnsNames };
}

// ---------------------------------------------------------------------------------------------
// Certificates (RFC 5280)

/** A positive serial number of 20 random bytes (the most RFC 5280 4.1.2.2 allows), as bytes and in decimal. */
export function newSerial(): { bytes: Buffer; decimal: string } {
    const bytes = randomBytes(20);
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    return { bytes, decimal: BigInt(`0x${bytes.toString("hex")}`).toString(10) };
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's bits. */
function keyId(spki: Buffer): Buffer {
    const bits = children(parseDer(spki))[1].contents.subarray(1);
    return createHash("sha1").update(bits).digest();
}

export interface CertificateTemplate {
    serial: Buffer;
    subject: Subject;
    /** The subject's SubjectPublicKeyInfo (DER). */
    spki: Buffer;
    notBefore: Date;
    notAfter: Date;
    dnsNames?: string[];
    /** A CA certificate (basicConstraints CA, keyCertSign and cRLSign) rather than a server's. */
    isCa?: boolean;
}

export interface Issuer {
    key: KeyObject;
    subject: Subject;
    spki: Buffer;
}

/**
 * A certificate in DER: v3; basicConstraints, keyUsage (critical); for a leaf the extended key
 * usages serverAuth and clientAuth and the DNS names as subjectAltName; subject and authority key
 * identifiers (no authority key identifier when it is self-signed: the issuer's key is the
 * subject's).
 */
export function createCertificate(t: CertificateTemplate, issuer: Issuer): Buffer {
    const selfSigned = issuer.spki.equals(t.spki);
    const extensions = [
        // keyUsage bits: digitalSignature (0), keyEncipherment (2), keyCertSign (5), cRLSign (6).
        t.isCa ? extension(OID.keyUsage, bitString(Buffer.from([0x86]), 1), true) : extension(OID.keyUsage, bitString(Buffer.from([0xa0]), 5), true),
        ...(t.isCa ? [] : [extension(OID.extKeyUsage, seq(oid(OID.serverAuth), oid(OID.clientAuth)))]),
        extension(OID.basicConstraints, t.isCa ? seq(tlv(TAG.BOOLEAN, Buffer.from([0xff]))) : seq(), true),
        extension(OID.subjectKeyId, octetString(keyId(t.spki))),
        ...(selfSigned ? [] : [extension(OID.authorityKeyId, seq(context(0, keyId(issuer.spki), false)))]),
        ...(t.dnsNames && t.dnsNames.length > 0 ? [extension(OID.subjectAltName, generalNames(t.dnsNames, [], []))] : []),
    ];
    const { algorithm } = signingParams(issuer.key);
    const tbs = seq(
        context(0, smallInt(2)),
        uint(t.serial),
        algorithm,
        encodeName(issuer.subject),
        seq(time(t.notBefore), time(t.notAfter)),
        encodeName(t.subject),
        t.spki,
        context(3, seq(...extensions)),
    );
    return signed(tbs, issuer.key);
}

export { spkiOf };
