// The Nix configuration every test uses, whatever the machine has in /etc/nix: a fresh machine
// with Debian's nix-bin has no nix.conf and no `nixbld` group, and a developer's machine may have
// substituters or a sandbox these offline tests must not use. NIX_CONF_DIR points at an empty
// directory so /etc/nix/nix.conf is never read; NIX_CONFIG then sets everything the tests need.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

/** Offline, unsandboxed (the builders are /bin/sh), builds as the calling user, flakes on. */
export const TEST_NIX_CONFIG = [
    "experimental-features = nix-command flakes",
    "sandbox = false",
    "build-users-group =",
    "substituters =",
    "flake-registry =",
].join("\n");

/** An empty configuration directory, made once per process. */
function emptyConfDir(): string {
    const dir = path.join(os.tmpdir(), `blog-test-nix-conf-${process.pid}`);
    fs.mkdirSync(dir, { recursive: true });
    return dir;
}

/** The variables to give any process that runs Nix. */
export function nixEnv(): Record<string, string> {
    return { NIX_CONFIG: TEST_NIX_CONFIG, NIX_CONF_DIR: emptyConfDir(), NIX_USER_CONF_FILES: "" };
}
