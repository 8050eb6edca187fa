import { InputProblem, STORE_PATH, StackConfig, failOn } from "./config";
import { evalAttribute, evaluateFlake, toplevelAttribute } from "./nixEval";

/** The host's facts, declared by the flake's host-facts module (`blog.host`) and set in the host file. */
export interface HostFacts {
    /** Fully qualified domain the site answers on; the DNS records and the health check use it. */
    domain: string;
    /** Contact address for the ACME account. */
    acmeEmail: string;
    /** OpenSSH public keys allowed to log in as root; uploaded to Hetzner for the first login. */
    adminSshKeys: string[];
    /** Nix system of the host: x86_64-linux or aarch64-linux. */
    system: "x86_64-linux" | "aarch64-linux";
}

/** What one evaluation of the flake yields. */
export interface HostEvaluation {
    host: HostFacts;
    /** Store path of `config.system.build.toplevel`. */
    toplevel: string;
}

const SYSTEMS = ["x86_64-linux", "aarch64-linux"] as const;
const KEY_TYPES = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];
/** Domains reserved for documentation (RFC 2606): the example host's, never a real site's. */
const EXAMPLE_DOMAIN = /(^|\.)example\.(com|net|org)$/;

/** Why a domain is not a fully qualified name we can serve, or undefined when it is. */
export function domainProblem(domain: string): string | undefined {
    const fqdn =
        domain.length <= 253 &&
        /^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.[a-z]{2,63}$/.test(domain);
    if (!fqdn) return "a fully qualified lowercase domain without a trailing dot, such as blog.example.org";
    if (EXAMPLE_DOMAIN.test(domain)) {
        return "your own domain: this is the example host's placeholder (set blog.host.domain in the host file)";
    }
    return undefined;
}

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

function isRecord(value: unknown): value is Record<string, unknown> {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Checks what the flake evaluated to, and that it fits the stack's config; throws one error
 * that lists every problem, naming the option in the flake, its value and what was expected.
 */
export function checkEvaluation(raw: unknown, config: StackConfig): HostEvaluation {
    const where = evalAttribute(config.flake, config.nixosConfiguration);
    const problems: InputProblem[] = [];
    const option = (name: string) => `${where}.config.blog.host.${name}`;
    const host = isRecord(raw) && isRecord(raw.host) ? raw.host : {};
    const toplevel = isRecord(raw) ? raw.toplevel : undefined;

    const domain = host.domain;
    const domainWhy = typeof domain === "string" ? domainProblem(domain) : "a string";
    if (domainWhy) problems.push(new InputProblem(option("domain"), domain, domainWhy));

    const email = host.acmeEmail;
    if (typeof email !== "string" || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) {
        problems.push(new InputProblem(option("acmeEmail"), email, "an e-mail address for the ACME account"));
    } else if (EXAMPLE_DOMAIN.test(email.split("@")[1])) {
        problems.push(
            new InputProblem(option("acmeEmail"), email, "your own address: ACME refuses example domains"),
        );
    }

    const keys = host.adminSshKeys;
    if (!Array.isArray(keys) || keys.length === 0) {
        problems.push(new InputProblem(option("adminSshKeys"), keys, "a non-empty list of OpenSSH public keys"));
    } else {
        keys.forEach((key, i) => {
            const why = typeof key === "string" ? publicKeyProblem(key) : "a string";
            if (why) problems.push(new InputProblem(`${option("adminSshKeys")}[${i}]`, key, why));
        });
    }

    // Whether the server type runs this system is Hetzner's to say (preflight.ts).
    const system = host.system;
    if (typeof system !== "string" || !(SYSTEMS as readonly string[]).includes(system)) {
        problems.push(new InputProblem(option("system"), system, `one of ${SYSTEMS.join(", ")}`));
    }

    if (typeof toplevel !== "string" || !STORE_PATH.test(toplevel)) {
        problems.push(
            new InputProblem(toplevelAttribute(config.flake, config.nixosConfiguration), toplevel, "a Nix store path"),
        );
    }

    failOn(problems, `The host facts in ${where} cannot be deployed:`);
    return { host: host as unknown as HostFacts, toplevel: toplevel as string };
}

/** Evaluates the flake once and checks the result; see nixEval.ts for the one command it runs. */
export function evaluateHost(config: StackConfig): HostEvaluation {
    return checkEvaluation(evaluateFlake(config.flake, config.nixosConfiguration), config);
}
