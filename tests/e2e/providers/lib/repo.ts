// Where the project is, and which provider versions it pins.
import * as fs from "fs";
import * as path from "path";

/**
 * The repository root: $BLOG_E2E_REPO, else the checkout the stand-ins were built from (build.sh
 * writes it to standins.json beside the compiled files, so that the launchers need not put
 * anything into the environment the plugins, and the commands they run, pass on).
 */
export function repoRoot(): string {
    if (process.env.BLOG_E2E_REPO) return process.env.BLOG_E2E_REPO;
    const baked = path.join(__dirname, "..", "standins.json");
    if (fs.existsSync(baked)) return (JSON.parse(fs.readFileSync(baked, "utf8")) as { repo: string }).repo;
    throw new Error("BLOG_E2E_REPO is not set and the stand-ins were not built by build.sh");
}

/**
 * The version of `@pulumi/<name>` that package-lock.json pins: the SDK registers its resources
 * with that version, so the engine asks for a plugin of it.
 */
export function pinnedVersion(name: string): string {
    const lock = JSON.parse(fs.readFileSync(path.join(repoRoot(), "package-lock.json"), "utf8")) as {
        packages?: Record<string, { version?: string }>;
    };
    const version = lock.packages?.[`node_modules/@pulumi/${name}`]?.version;
    if (!version) throw new Error(`package-lock.json pins no @pulumi/${name}`);
    return version;
}
