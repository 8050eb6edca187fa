// The engine the e2e suite drives is the one package-lock.json asks for: the CLI built by
// scripts/build-engine.sh at the version of @pulumi/pulumi, which the Automation API accepts
// without its version check switched off.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { engineCommand, engineRoot, lockedPulumiVersion } from "./harness";

test("the engine is pulumi at exactly the version of @pulumi/pulumi in package-lock.json", async () => {
    const locked = lockedPulumiVersion();
    const root = engineRoot();
    expect(execFileSync(path.join(root, "bin/pulumi"), ["version"], { encoding: "utf8", env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "true" } }).trim()).toBe(
        `v${locked}`,
    );
    expect((await engineCommand(root)).version?.format()).toBe(locked);
    // The language host beside it, and which module it came from (scripts/build-engine.sh).
    expect(fs.existsSync(path.join(root, "bin/pulumi-language-nodejs"))).toBe(true);
    expect(fs.readFileSync(path.join(root, "bin/language-host.version"), "utf8").trim()).toMatch(/^v\d+\.\d+\.\d+( \(sdk\/v3\))?$/);
});
