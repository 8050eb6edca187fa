// The deploy scripts, the target shim, the host units' scripts, the test
// harness (the targets' own programs included) and the benchmark pass
// shellcheck (following `source`d files).
import * as fs from "fs";
import * as path from "path";
import { repoRoot, run } from "./harness/target";

const scripts = [
  "scripts/install.sh",
  "scripts/deploy.sh",
  "scripts/target-shim.sh",
  "scripts/data-volume.sh",
  "scripts/data-backup.sh",
  "scripts/closure-diff.sh",
  "scripts/lib/common.sh",
  "scripts/flake-update.sh",
  "scripts/lib/patterns.sh",
  "scripts/lib/data-target.sh",
  "scripts/data-backup.sh",
  "scripts/backup.sh",
  "scripts/backup-status.sh",
  "scripts/host-status.sh",
  "scripts/status.sh",
  "tests/integration/harness/target.sh",
  "tests/integration/harness/hostile-shim.sh",
  "tests/integration/harness/rootfs.sh",
  "tests/integration/harness/activate.sh",
  "tests/integration/harness/service.sh",
  "tests/integration/harness/rootfs/usr/local/sbin/udevadm",
  "tests/integration/harness/rootfs/etc/systemd/system-generators/systemd-fstab-generator",
  "tests/integration/harness/rootfs/usr/local/lib/blog-test/boot-system",
  "tests/integration/harness/fake-nixos-anywhere.sh",
  "tests/e2e/fake-nixos-anywhere.sh",
  "nix/modules/units/secrets-resolve.sh",
  "nix/modules/units/data-dirs.sh",
  "scripts/setup.sh",
  "bench/deploy-bench.sh",
].filter((f) => fs.existsSync(path.join(repoRoot, f)));

test.each(scripts)("%s passes shellcheck", (script) => {
  const r = run("shellcheck", ["-x", "--source-path=SCRIPTDIR", script], { timeoutMs: 60_000, cwd: repoRoot });
  expect(r.stdout + r.stderr).toBe("");
  expect(r.status).toBe(0);
});
