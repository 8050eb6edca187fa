// Conventions of pulumi-terraform-bridge (v3.135.0, which the bridged providers here build on) that
// decide what a user sees: auto-names, check failure texts, error wrapping.
import { createHash, randomBytes } from "crypto";

/**
 * An auto-name as `SetAutonaming(255, "-")` makes it: the resource's name, "-", 7 random hex
 * digits (pkg/tfbridge/info/autonaming.go AutoName, Randlen 7; ComputeAutoNameDefault draws them
 * with resource.NewUniqueName from the engine's random seed, so a preview and an update agree).
 */
export function autoName(name: string, seed: Buffer): string {
    const source = seed.length > 0 ? createHash("sha256").update(seed).digest() : randomBytes(32);
    const hex = "0123456789abcdef";
    let suffix = "";
    for (let i = 0; i < 7; i++) suffix += hex[source[i] % 16];
    return `${name}-${suffix}`;
}

/** A resource check failure (pkg/tfbridge/check_failures.go NewCheckFailure): reason, then where to look. */
export function resourceFailure(reason: string, resourceName: string, valuePath: string): { reason: string } {
    return { reason: `${reason}. Examine values at '${resourceName}.${valuePath}'.` };
}

/**
 * A provider configuration failure (check_failures.go formatProviderCheckFailure): for a default
 * provider it says which `pulumi config` key to look at, for an explicit one which property.
 */
export function configFailure(pkg: string, urn: string, reason: string, key: string): { reason: string } {
    const name = urn.split("::").pop() ?? "";
    const text = `could not validate provider configuration: ${reason}`;
    if (!name.startsWith("default")) return { reason: `${text}. Examine values at '${name}.${key}'.` };
    return { reason: `${text}. Check \`pulumi config get ${pkg}:${key}\`.` };
}

/** hashicorp/go-multierror's default format, which SDKv2 diagnostics reach the user in. */
export function multiError(messages: string[]): string {
    const items = messages.map((m) => `* ${m}`).join("\n\t");
    return messages.length === 1 ? `1 error occurred:\n\t${items}\n\n` : `${messages.length} errors occurred:\n\t${items}\n\n`;
}
