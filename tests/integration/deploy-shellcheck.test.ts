// The deploy scripts, the target shim, the test harness and the benchmark
// pass shellcheck (following `source`d files).
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
  "tests/integration/harness/target.sh",
  "tests/integration/harness/hostile-shim.sh",
  "tests/integration/harness/fake-nixos-anywhere.sh",
  "bench/deploy-bench.sh",
].filter((f) => fs.existsSync(path.join(repoRoot, f)));

test.each(scripts)("%s passes shellcheck", (script) => {
  const r = run("shellcheck", ["-x", "--source-path=SCRIPTDIR", script], { timeoutMs: 60_000, cwd: repoRoot });
  expect(r.stdout + r.stderr).toBe("");
  expect(r.status).toBe(0);
});
