// deploy.sh against a real target: an sshd in its own mount namespace with
// its own Nix store (see harness/target.sh). The tests run in order on one
// target; each states the state it starts from.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { TEST_NIX_CONFIG } from "../nixConfig";
import {
  Target,
  buildClosure,
  changeHostKey,
  closedPort,
  currentSystem,
  generation,
  leftoverControlMasters,
  run,
  runScript,
  scriptEnv,
  sshConnections,
  startTarget,
  stopTarget,
  targetHasPath,
  waitFor,
} from "./harness/target";

jest.setTimeout(180_000);

let target: Target | undefined;
let closures: Record<string, string>;

function t(): Target {
  if (!target) throw new Error("target not started");
  return target;
}

function healthPage(): string {
  const file = path.join(t().dir, "health", "health.txt");
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim() : "";
}

// Every deploy, whatever its outcome, closes its SSH connection on exit.
function deploy(closure: string, extra: Record<string, string> = {}) {
  const r = runScript("deploy.sh", scriptEnv(t(), { SYSTEM_CLOSURE: closure, ...extra }));
  expect(leftoverControlMasters()).toEqual([]);
  return r;
}

beforeAll(() => {
  closures = {
    first: buildClosure({ name: "first" }),
    second: buildClosure({ name: "second", changedDep: 0 }),
    failing: buildClosure({ name: "failing", fail: true }),
    unhealthy: buildClosure({ name: "unhealthy", healthy: false }),
    unconfirmed: buildClosure({ name: "unconfirmed" }),
    notCopied: buildClosure({ name: "not-copied" }),
    notExpected: buildClosure({ name: "not-expected" }),
  };
  target = startTarget();
});

afterAll(() => {
  stopTarget(target);
});

test("bad input is refused with exit 1, naming the variable and what is expected", () => {
  const missing = runScript("deploy.sh", scriptEnv(t(), { SYSTEM_CLOSURE: "" }));
  const deadline = deploy(closures.first, { HEALTH_TIMEOUT: "60", ROLLBACK_DEADLINE: "30" });

  expect(missing.status).toBe(1);
  expect(missing.stderr).toContain("SYSTEM_CLOSURE is not set");
  expect(deadline.status).toBe(1);
  expect(deadline.stderr).toContain("ROLLBACK_DEADLINE='30' is not valid; expected more than HEALTH_TIMEOUT (60)");
  expect(generation(t())).toBe(0);
});

test("first deploy copies the closure, activates generation 1 and passes the health check", () => {
  const r = deploy(closures.first, { HEALTH_EXPECT: "blog ok first" });

  expect(r.stderr).toContain("Deployed: the host runs generation 1");
  expect(r.status).toBe(0);
  expect(targetHasPath(t(), closures.first)).toBe(true);
  expect(currentSystem(t())).toBe(closures.first);
  expect(generation(t())).toBe(1);
  expect(healthPage()).toBe("blog ok first");
});

test("deploying the running closure again copies nothing, adds no generation and opens one connection", () => {
  expect(currentSystem(t())).toBe(closures.first);
  const connectionsBefore = sshConnections(t());

  const r = deploy(closures.first);

  expect(r.status).toBe(0);
  expect(r.stderr).toContain("Nothing to do");
  expect(r.stderr).not.toMatch(/copying|Activating/);
  expect(generation(t())).toBe(1);
  expect(sshConnections(t()) - connectionsBefore).toBe(1);
});

test("a new closure becomes generation 2 over a single SSH connection", () => {
  const connectionsBefore = sshConnections(t());

  const r = deploy(closures.second, { HEALTH_EXPECT: "blog ok second" });

  expect(r.stderr).toContain("Deployed: the host runs generation 2");
  expect(r.status).toBe(0);
  expect(currentSystem(t())).toBe(closures.second);
  expect(generation(t())).toBe(2);
  expect(sshConnections(t()) - connectionsBefore).toBe(1);
});

test("a failing activation is rolled back to the previous generation (exit 3, names the step)", () => {
  const before = { system: currentSystem(t()), generation: generation(t()) };

  const r = deploy(closures.failing);

  expect(r.status).toBe(3);
  expect(r.stderr).toMatch(/deploy failed: activation failed/);
  expect(r.stderr).toContain(`rolled back: the host runs generation ${before.generation}`);
  expect(currentSystem(t())).toBe(before.system);
  expect(generation(t())).toBe(before.generation);
  expect(healthPage()).toBe("blog ok second");
});

test("a clean activation that fails the health check is rolled back (exit 3)", () => {
  const before = { system: currentSystem(t()), generation: generation(t()) };

  const r = deploy(closures.unhealthy);

  expect(r.status).toBe(3);
  expect(r.stderr).toMatch(/deploy failed: health check: .*health\.txt did not pass within 4s/);
  expect(r.stderr).toContain(`rolled back: the host runs generation ${before.generation}`);
  expect(currentSystem(t())).toBe(before.system);
  expect(generation(t())).toBe(before.generation);
  expect(healthPage()).toBe("blog ok second");
});

test("a page without the HEALTH_EXPECT content fails the health check and is rolled back (exit 3)", () => {
  const before = { system: currentSystem(t()), generation: generation(t()) };

  const r = deploy(closures.notExpected, { HEALTH_EXPECT: "blog ok second" });

  expect(r.status).toBe(3);
  expect(r.stderr).toContain("does not contain HEALTH_EXPECT 'blog ok second'");
  expect(currentSystem(t())).toBe(before.system);
  expect(generation(t())).toBe(before.generation);
});

test("a target presenting another host key is refused before anything is copied (exit 2)", () => {
  const pinned = t().hostKey;
  const presented = changeHostKey(t());
  const fingerprintOf = (key: string) =>
    execFileSync("ssh-keygen", ["-lf", "-"], { input: key, encoding: "utf8" }).split(" ")[1];
  const generationBefore = generation(t());
  try {
    const r = deploy(closures.notCopied);

    expect(r.status).toBe(2);
    expect(r.stderr).toContain("host key mismatch");
    expect(r.stderr).toContain(`expected ${fingerprintOf(pinned)}`);
    expect(r.stderr).toContain(`it presents: ${fingerprintOf(presented)}`);
    expect(targetHasPath(t(), closures.notCopied)).toBe(false);
    expect(generation(t())).toBe(generationBefore);
  } finally {
    t().hostKey = presented; // the following tests pin the target's new key
  }
});

test("a target that does not answer is retried within CONNECT_ATTEMPTS, then times out (exit 2)", () => {
  const started = Date.now();

  const r = runScript(
    "deploy.sh",
    scriptEnv(t(), { SYSTEM_CLOSURE: closures.notCopied, TARGET_PORT: String(closedPort()), CONNECT_ATTEMPTS: "3" }),
  );

  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/timed out: .* did not answer after 3 attempts/);
  expect((r.stderr.match(/attempt \d\/3 failed/g) ?? []).length).toBe(2);
  expect(Date.now() - started).toBeLessThan(30_000);
});

test("too little space in the target's store is refused before any copy, naming both numbers (exit 2)", () => {
  const small = startTarget({ storeSize: "4m" });
  try {
    const big = buildClosure({ name: "big", blobBytes: 8 * 1024 * 1024 });

    const r = runScript("deploy.sh", scriptEnv(small, { SYSTEM_CLOSURE: big }));

    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/not enough space in the target's \/nix: needed \d{7,} bytes .*available \d+ bytes/);
    expect(r.stderr).not.toContain("Copying");
    expect(targetHasPath(small, big)).toBe(false);
    expect(generation(small)).toBe(0);
  } finally {
    stopTarget(small);
  }
});

test("too little space in the target's /boot for one more kernel and initrd is refused before any copy (exit 2)", () => {
  const smallBoot = startTarget({ bootSize: "16k" });
  try {
    const r = runScript("deploy.sh", scriptEnv(smallBoot, { SYSTEM_CLOSURE: closures.first }));

    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/not enough space in the target's \/boot .*: needed 24576 bytes \(kernel\+initrd\), available 16384 bytes/);
    expect(targetHasPath(smallBoot, closures.first)).toBe(false);
  } finally {
    stopTarget(smallBoot);
  }
});

test("a deploy lost after the switch and before confirming is rolled back by the target itself", () => {
  const before = { system: currentSystem(t()), generation: generation(t()) };

  const r = deploy(closures.unconfirmed, {
    DEPLOY_TEST_STOP_AFTER: "activate",
    HEALTH_TIMEOUT: "2",
    ROLLBACK_DEADLINE: "4",
  });

  expect(r.status).toBe(4);
  expect(r.stderr).toContain("stopping unconfirmed");
  expect(currentSystem(t())).toBe(closures.unconfirmed);
  const rolledBack = waitFor(() => currentSystem(t()) === before.system, 15_000);
  expect(rolledBack).toBe(true);
  expect(generation(t())).toBe(before.generation);
  expect(healthPage()).toBe("blog ok second");
});

test("a closure missing locally is built from FLAKE_ATTR; a FLAKE_ATTR that builds another path is refused (exit 1)", () => {
  const flake = fs.mkdtempSync(path.join(os.tmpdir(), "blog-flake-"));
  try {
    const suffix = path.basename(flake).replace(/[^A-Za-z0-9]/g, "");
    const system = process.arch === "arm64" ? "aarch64-linux" : "x86_64-linux";
    fs.copyFileSync(path.join(__dirname, "harness", "closures.nix"), path.join(flake, "closures.nix"));
    fs.writeFileSync(
      path.join(flake, "flake.nix"),
      `{ outputs = { self }: {
          toplevel = import ./closures.nix { name = "flake-${suffix}"; system = "${system}"; };
          other = import ./closures.nix { name = "other-${suffix}"; system = "${system}"; };
        }; }`,
    );
    const nix = ["--extra-experimental-features", "nix-command flakes"];
    const expected = execFileSync("nix", [...nix, "eval", "--raw", `path:${flake}#toplevel.outPath`], {
      encoding: "utf8",
    });
    const offline = { NIX_CONFIG: TEST_NIX_CONFIG };
    expect(run("nix-store", ["--check-validity", expected]).status).not.toBe(0);

    const absent = deploy(expected, offline);
    const wrong = deploy(expected, { ...offline, FLAKE_ATTR: `path:${flake}#other` });
    const built = deploy(expected, { ...offline, FLAKE_ATTR: `path:${flake}#toplevel` });

    expect(absent.status).toBe(1);
    expect(absent.stderr).toContain("is not in the local store and no substituter has it");
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/FLAKE_ATTR='.*#other' built \/nix\/store\/\S+-nixos-system-other-\S+; expected SYSTEM_CLOSURE=/);
    expect(built.stderr).toContain("Deployed:");
    expect(built.status).toBe(0);
    expect(currentSystem(t())).toBe(expected);
  } finally {
    fs.rmSync(flake, { recursive: true, force: true });
  }
});
