// What a person sees of each user-facing script: --help with a usage line, what is required, the
// defaults and an example, and no test hook; bad input reported all at once, in one message.
import { spawnSync } from "child_process";
import * as path from "path";

const repoRoot = path.resolve(__dirname, "../..");

const SCRIPTS = [
    "install",
    "deploy",
    "data-volume",
    "data-backup",
    "backup",
    "backup-status",
    "closure-diff",
    "flake-update",
    "setup",
    "build-engine",
];

/** Environment variables that exist only for the tests (docs/development.md, "Test hooks"). */
const TEST_HOOKS = ["DEPLOY_TEST_", "FLAKE_UPDATE_GIT_URL", "FLAKE_UPDATE_TODAY", "BLOG_PROGRESS_INTERVAL", "BLOG_E2E", "FAKE_", "TARGET_HOST_KEY_FILE"];

/** Runs a script with only the environment given (and a PATH), never the caller's. */
function script(name: string, args: string[], env: Record<string, string> = {}) {
    const r = spawnSync("bash", [path.join(repoRoot, "scripts", `${name}.sh`), ...args], {
        cwd: repoRoot,
        encoding: "utf8",
        timeout: 60_000,
        env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? "/root", ...env },
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

describe("--help", () => {
    test.each(SCRIPTS)("%s.sh --help: a usage line, what is required, defaults, an example, no test hook", (name) => {
        const r = script(name, ["--help"]);
        expect(r.status).toBe(0);
        const lines = r.stdout.split("\n");
        expect(lines[0]).toMatch(new RegExp(`^Usage: scripts/${name}\\.sh`));
        expect(r.stdout).toMatch(/^Required\b/m);
        expect(r.stdout).toMatch(/^(Optional \(default\)|Options \(default\)|Options):/m);
        expect(r.stdout).toMatch(/^Example:\n  \S/m);
        for (const hook of TEST_HOOKS) expect([name, hook, r.stdout.includes(hook)]).toEqual([name, hook, false]);
        // -h is the same.
        expect(script(name, ["-h"]).stdout).toBe(r.stdout);
    });
});

describe("bad input, all at once", () => {
    test("deploy.sh: every missing and bad variable in one message, exit 1, nothing run", () => {
        const r = script("deploy", [], {
            TARGET_PORT: "twenty-two",
            HEALTH_TIMEOUT: "5m",
            BUILD_ON: "sometimes",
            HEALTH_ACME: "maybe",
            HOST_SECRETS: "ok bad-name",
        });
        expect(r.status).toBe(1);
        expect(r.stdout).toBe("");
        expect(r.stderr).toContain("problems with the input (see --help):");
        for (const expected of [
            "TARGET_HOST is not set; it is required",
            "HOST_KEY is not set; it is required",
            "SYSTEM_CLOSURE is not set; it is required",
            "HEALTH_URL is not set and DOMAIN is not set either",
            "TARGET_PORT='twenty-two' is not valid",
            "HEALTH_TIMEOUT='5m' is not valid",
            "BUILD_ON='sometimes' is not valid",
            "HEALTH_ACME='maybe' is not valid",
            "HOST_SECRETS lists 'bad-name'",
            "HOST_SECRET_ok is not set",
        ]) {
            expect(r.stderr).toContain(expected);
        }
        expect(r.stderr.match(/^error: /gm)).toHaveLength(1);
    });

    test("deploy.sh: one problem is one line, as before", () => {
        const r = script("deploy", [], { TARGET_HOST: "203.0.113.7", HOST_KEY, DOMAIN: "blog.example.org", SYSTEM_CLOSURE: "/tmp/result" });
        expect(r.status).toBe(1);
        expect(r.stderr.trim()).toMatch(/^error: SYSTEM_CLOSURE='\/tmp\/result' is not valid; expected a store path/);
    });

    test("install.sh: every missing variable and bad value in one message", () => {
        const r = script("install", [], { HOST_KEY: "ecdsa-sha2-nistp256 not-base64!", INSTALL_TIMEOUT: "5", PUBLISHED_ADDRESSES: "203.0.113.7 not-an-address" });
        expect(r.status).toBe(1);
        for (const expected of [
            "TARGET_HOST is not set",
            "HOST_KEY_PRIVATE is not set",
            "BOOTSTRAP_HOST_KEY is not set",
            "INSTALL_TIMEOUT='5' is not valid; expected an integer >= 60",
            "HOST_KEY='ecdsa-sha2-nistp256 not-base64!' is not valid",
            "'not-an-address' is not an IPv4 or IPv6 address",
        ]) {
            expect(r.stderr).toContain(expected);
        }
        expect(r.stderr.match(/^error: /gm)).toHaveLength(1);
    });

    test("data-volume.sh, backup.sh, data-backup.sh: every bad variable in one message", () => {
        const volume = script("data-volume", ["attach"], { TARGET_HOST: "203.0.113.7", HOST_KEY, CONNECT_TIMEOUT: "x", DATA_LABEL: "a label far too long" });
        expect(volume.status).toBe(1);
        for (const expected of ["DATA_DEVICE is not set", "CONNECT_TIMEOUT='x' is not valid", "DATA_LABEL='a label far too long' is not valid"]) {
            expect(volume.stderr).toContain(expected);
        }
        const backup = script("backup", ["status"], { TARGET_HOST: "bad host!", HOST_KEY: "ssh-ed25519", BACKUP_TIMEOUT: "0" });
        expect(backup.status).toBe(1);
        for (const expected of ["BACKUP_TIMEOUT='0' is not valid", "HOST_KEY='ssh-ed25519' is not valid", "TARGET_HOST='bad host!' is not valid"]) {
            expect(backup.stderr).toContain(expected);
        }
        const data = script("data-backup", ["backup", "/nonexistent-dir/x.tar.gz"], { TARGET_HOST: "203.0.113.7", HOST_KEY, DATA_MOUNT: "/", COPY_TIMEOUT: "-1" });
        expect(data.status).toBe(1);
        for (const expected of ["DATA_MOUNT='/' is not valid", "COPY_TIMEOUT='-1' is not valid"]) expect(data.stderr).toContain(expected);
    });

    test("closure-diff.sh and flake-update.sh: every bad argument in one message", () => {
        const diff = script("closure-diff", ["--bogus", "--heading"]);
        expect(diff.status).toBe(1);
        for (const expected of ["unknown option: --bogus", "--heading needs a value", "give two store paths"]) expect(diff.stderr).toContain(expected);
        const update = script("flake-update", ["--flake", "/nonexistent", "--what", "--body"]);
        expect(update.status).toBe(1);
        for (const expected of ["--flake /nonexistent: no flake.nix there", "unknown argument '--what'", "--body needs a value"]) {
            expect(update.stderr).toContain(expected);
        }
    });
});

test("the scripts this file covers pass shellcheck (setup.sh and build-engine.sh too)", () => {
    const r = spawnSync("shellcheck", ["-x", "--source-path=SCRIPTDIR", ...SCRIPTS.map((n) => `scripts/${n}.sh`)], { cwd: repoRoot, encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
});
