// Builds the stand-in provider plugins (see build.sh) for the e2e suite.
import { execFileSync } from "child_process";
import * as path from "path";

/**
 * Compiles the stand-ins into `outDir` and writes their launchers; returns the directory to put
 * first on PATH (it holds pulumi-resource-hcloud, -cloudflare, -tls and -command).
 */
export function buildStandIns(outDir: string): string {
    const printed = execFileSync("bash", [path.join(__dirname, "build.sh"), outDir], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
        timeout: 300_000,
    });
    const lines = printed.trim().split("\n");
    return lines[lines.length - 1];
}
