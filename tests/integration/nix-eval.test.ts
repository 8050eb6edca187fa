import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { configDefaults } from "../../src/config";
import { checkEvaluation } from "../../src/host";
import { evaluateFlake } from "../../src/nixEval";

// The real `nix` (Debian's nix-bin) evaluates a real flake: the same call the program makes at
// preview, against a flake with no inputs so that it runs offline.
describe("evaluateFlake with the real nix", () => {
    let flake: string;
    beforeAll(() => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "host-flake-"));
        fs.copyFileSync(path.join(__dirname, "../fixtures/host-flake/flake.nix"), path.join(dir, "flake.nix"));
        flake = `path:${dir}`;
    });
    afterAll(() => fs.rmSync(flake.slice("path:".length), { recursive: true, force: true }));

    test("returns the host facts and the toplevel's store path without building it", () => {
        const raw = evaluateFlake(flake, "blog");
        const checked = checkEvaluation(raw, { ...configDefaults, hostSecrets: {}, backup: { target: { kind: "none" } }, cloudflareZoneId: "0".repeat(32), flake });
        expect(checked.host.domain).toBe("blog.example-site.org");
        expect(checked.toplevel).toMatch(/^\/nix\/store\/[0-9a-z]{32}-nixos-system-blog-test$/);
        expect(fs.existsSync(checked.toplevel)).toBe(false);
    });

    test("fails with nix's own message and the attribute it tried when the configuration is missing", () => {
        expect(() => evaluateFlake(flake, "nope")).toThrow(
            new RegExp(`nix eval of ${flake.replace(/[/.]/g, "\\$&")}#nixosConfigurations\\."nope" failed \\(exit 1\\):\\n[\\s\\S]*nope`),
        );
    });
});
