import { execFileSync } from "child_process";
import * as pulumi from "@pulumi/pulumi";

/**
 * The one place the program runs Nix: a single `nix eval --json` of the host's facts and the
 * store path of its system (evaluation only, nothing is built). Tests replace this module.
 */

/** The Nix expression applied to `nixosConfigurations.<name>`; the flake's host-facts module declares `blog.host`. */
export const EVAL_APPLY =
    "c: { host = c.config.blog.host; secrets = builtins.attrNames (c.config.blog.secrets or { }); backupPaths = c.config.blog.backup.paths or [ ]; toplevel = c.config.system.build.toplevel.outPath; }";

/** The attribute evaluated for a flake and configuration, as shown in errors. */
export function evalAttribute(flake: string, configuration: string): string {
    return `${flake}#nixosConfigurations."${configuration}"`;
}

/** The attribute that builds the system of that configuration (what the deploy realises). */
export function toplevelAttribute(flake: string, configuration: string): string {
    return `${evalAttribute(flake, configuration)}.config.system.build.toplevel`;
}

/** Runs the evaluation and returns the parsed JSON, unchecked (see host.ts for the checks). */
export function evaluateFlake(flake: string, configuration: string): unknown {
    const attribute = evalAttribute(flake, configuration);
    const args = [
        "--extra-experimental-features",
        "nix-command flakes",
        "eval",
        "--json",
        attribute,
        "--apply",
        EVAL_APPLY,
    ];
    let stdout: string;
    try {
        stdout = execFileSync("nix", args, {
            encoding: "utf8",
            stdio: ["ignore", "pipe", "pipe"],
            env: process.env,
            maxBuffer: 16 * 1024 * 1024,
        });
    } catch (err) {
        const e = err as NodeJS.ErrnoException & { stderr?: string; status?: number | null };
        if (e.code === "ENOENT") {
            throw new pulumi.RunError(
                `Cannot evaluate ${attribute}: the \`nix\` command is not on PATH. ` +
                    "Install Nix (https://nixos.org/download) or run inside `nix develop ./nix`.",
            );
        }
        const detail = (e.stderr ?? "").trim() || e.message;
        throw new pulumi.RunError(`nix eval of ${attribute} failed (exit ${e.status ?? "?"}):\n${detail}`);
    }
    try {
        return JSON.parse(stdout);
    } catch {
        throw new pulumi.RunError(`nix eval of ${attribute} printed no JSON; it printed:\n${stdout.slice(0, 2000)}`);
    }
}
