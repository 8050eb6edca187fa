// The cloudflare stand-in's Origin CA: two self-signed roots, RSA 2048 and ECDSA P-256, named as
// Cloudflare's Origin CA roots are (cloudflare/cloudflared tlsconfig/cloudflare_ca.go holds both:
// "CloudFlare Origin SSL Certificate Authority" and "CloudFlare Origin SSL ECC Certificate
// Authority", O "CloudFlare, Inc.", San Francisco, California, US), kept in
// $BLOG_E2E_CLOUD_DIR/cloudflare-origin-ca/ as origin_ca_rsa_root.pem and origin_ca_ecc_root.pem
// (the names Cloudflare publishes them under) with their keys beside them. Made once, under a lock,
// by whichever comes first: the stand-in issuing a certificate or a test that wants the roots to
// trust (ensureOriginCa).
import { KeyObject, createPrivateKey, generateKeyPairSync } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { pem } from "./openssh";
import { withLock } from "./store";
import { Subject, createCertificate, newSerial, spkiOf } from "./x509";

export type OriginCaKind = "rsa" | "ecc";

export interface OriginCa {
    kind: OriginCaKind;
    key: KeyObject;
    subject: Subject;
    spki: Buffer;
    /** The root certificate (PEM) and where it is. */
    certificate: string;
    certificateFile: string;
}

const SUBJECTS: Record<OriginCaKind, Subject> = {
    rsa: {
        country: "US",
        province: "California",
        locality: "San Francisco",
        organization: "CloudFlare, Inc.",
        organizationalUnit: "CloudFlare Origin SSL Certificate Authority",
    },
    ecc: {
        country: "US",
        province: "California",
        locality: "San Francisco",
        organization: "CloudFlare, Inc.",
        organizationalUnit: "CloudFlare Origin SSL ECC Certificate Authority",
    },
};

const DAY = 86_400_000;

function files(cloudDir: string, kind: OriginCaKind): { dir: string; cert: string; key: string } {
    const dir = path.join(cloudDir, "cloudflare-origin-ca");
    return { dir, cert: path.join(dir, `origin_ca_${kind}_root.pem`), key: path.join(dir, `origin_ca_${kind}.key`) };
}

function load(cloudDir: string, kind: OriginCaKind): OriginCa | undefined {
    const f = files(cloudDir, kind);
    if (!fs.existsSync(f.cert) || !fs.existsSync(f.key)) return undefined;
    const key = createPrivateKey(fs.readFileSync(f.key, "utf8"));
    return { kind, key, subject: SUBJECTS[kind], spki: spkiOf(key), certificate: fs.readFileSync(f.cert, "utf8"), certificateFile: f.cert };
}

function make(cloudDir: string, kind: OriginCaKind): OriginCa {
    const f = files(cloudDir, kind);
    const key =
        kind === "rsa" ? generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey : generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
    const spki = spkiOf(key);
    // Valid from a day ago for twenty years: longer than the longest certificate it issues (5475 days).
    const notBefore = new Date(Math.floor(Date.now() / 60_000) * 60_000 - DAY);
    const der = createCertificate(
        { serial: newSerial().bytes, subject: SUBJECTS[kind], spki, notBefore, notAfter: new Date(notBefore.getTime() + 7305 * DAY), isCa: true },
        { key, subject: SUBJECTS[kind], spki },
    );
    fs.mkdirSync(f.dir, { recursive: true });
    fs.writeFileSync(f.key, key.export({ format: "pem", type: "pkcs8" }) as string, { mode: 0o600 });
    const certificate = pem("CERTIFICATE", der);
    fs.writeFileSync(f.cert, certificate);
    return { kind, key, subject: SUBJECTS[kind], spki, certificate, certificateFile: f.cert };
}

/** Both roots of the Origin CA in `cloudDir`, made on first use. */
export async function ensureOriginCa(cloudDir: string): Promise<Record<OriginCaKind, OriginCa>> {
    const existing = { rsa: load(cloudDir, "rsa"), ecc: load(cloudDir, "ecc") };
    if (existing.rsa && existing.ecc) return { rsa: existing.rsa, ecc: existing.ecc };
    fs.mkdirSync(files(cloudDir, "rsa").dir, { recursive: true });
    return withLock(path.join(files(cloudDir, "rsa").dir, "roots"), () => ({
        rsa: load(cloudDir, "rsa") ?? make(cloudDir, "rsa"),
        ecc: load(cloudDir, "ecc") ?? make(cloudDir, "ecc"),
    }));
}
