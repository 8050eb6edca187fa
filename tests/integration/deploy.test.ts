// deploy.sh against a real target: a container with systemd as PID 1, its own
// network and its own Nix store (see harness/target.sh), running fake systems
// whose units and switch-to-configuration are real (harness/closures.nix). The
// tests run in order on one target; each states the state it starts from.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { TEST_NIX_CONFIG } from "../nixConfig";
import {
  Target,
  bootDefault,
  buildClosure,
  changeHostKey,
  closedPort,
  copyClosureSources,
  copyToTarget,
  currentSystem,
  generation,
  healthPage,
  killGroup,
  leftoverControlMasters,
  onTarget,
  profileSystem,
  rebootTarget,
  run,
  runScript,
  scriptEnv,
  sshConnections,
  startScript,
  startTarget,
  stopTarget,
  targetHasPath,
  tryOnTarget,
  unitState,
  waitFor,
  waitForAsync,
} from "./harness/target";

jest.setTimeout(180_000);

let target: Target | undefined;
let closures: Record<string, string>;

function t(): Target {
  if (!target) throw new Error("target not started");
  return target;
}

// Every deploy, whatever its outcome, closes its SSH connection on exit.
function deploy(closure: string, extra: Record<string, string> = {}) {
  const r = runScript("deploy.sh", scriptEnv(t(), { SYSTEM_CLOSURE: closure, ...extra }));
  expect(leftoverControlMasters(t())).toEqual([]);
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
  expect(healthPage(t())).toBe("blog ok first");
});

test("deploying the running closure again copies nothing, adds no generation and opens one connection", () => {
  expect(currentSystem(t())).toBe(closures.first);
  const connectionsBefore = sshConnections(t());

  const r = deploy(closures.first);

  expect(r.status).toBe(0);
  expect(r.stderr).toContain("Nothing to change");
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
  expect(healthPage(t())).toBe("blog ok second");
});

test("a clean activation that fails the health check is rolled back (exit 3)", () => {
  const before = { system: currentSystem(t()), generation: generation(t()) };

  const r = deploy(closures.unhealthy);

  expect(r.status).toBe(3);
  expect(r.stderr).toMatch(/deploy failed: health check: .*health\.txt did not pass within 4s/);
  expect(r.stderr).toContain(`rolled back: the host runs generation ${before.generation}`);
  expect(currentSystem(t())).toBe(before.system);
  expect(generation(t())).toBe(before.generation);
  expect(healthPage(t())).toBe("blog ok second");
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
  // The switch back starts the site's unit of `second` after it points /run/current-system at it.
  expect(waitFor(() => healthPage(t()) === "blog ok second", 15_000)).toBe(true);
});

test("a closure missing locally is built from FLAKE_ATTR; a FLAKE_ATTR that builds another path is refused (exit 1)", () => {
  const flake = fs.mkdtempSync(path.join(os.tmpdir(), "blog-flake-"));
  try {
    const suffix = path.basename(flake).replace(/[^A-Za-z0-9]/g, "");
    const system = process.arch === "arm64" ? "aarch64-linux" : "x86_64-linux";
    copyClosureSources(flake);
    fs.writeFileSync(
      path.join(flake, "flake.nix"),
      `{ outputs = { self }: {
          toplevel = import ./closures.nix { name = "flake-${suffix}"; system = "${system}"; modules = ./modules; };
          other = import ./closures.nix { name = "other-${suffix}"; system = "${system}"; modules = ./modules; };
        }; }`,
    );
    const nix = ["--extra-experimental-features", "nix-command flakes"];
    // process.env explicitly: jest's sandbox holds the tests' Nix settings, Node's default would not.
    const expected = execFileSync("nix", [...nix, "eval", "--raw", `path:${flake}#toplevel.outPath`], {
      encoding: "utf8",
      env: process.env,
    });
    const offline = { NIX_CONFIG: TEST_NIX_CONFIG };
    expect(run("nix-store", ["--check-validity", expected]).status).not.toBe(0);

    const absent = deploy(expected, offline);
    const wrong = deploy(expected, { ...offline, FLAKE_ATTR: `path:${flake}#other` });
    const built = deploy(expected, { ...offline, FLAKE_ATTR: `path:${flake}#toplevel` });

    expect(absent.status).toBe(1);
    expect(absent.stderr).toContain("is not in the local store and no substituter has it");
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/FLAKE_ATTR='.*#other' builds \/nix\/store\/\S+-nixos-system-other-\S+; expected SYSTEM_CLOSURE=/);
    expect(built.stderr).toContain("Deployed:");
    expect(built.status).toBe(0);
    expect(currentSystem(t())).toBe(expected);
  } finally {
    fs.rmSync(flake, { recursive: true, force: true });
  }
});

// Deploy v2: commit after verify, one deploy at a time, both address families, builds on the
// target. Each scenario starts its own target and first deploys `base` to it, so that a verified
// system runs (and boots) before the scenario starts.
describe("deploy v2", () => {
  let v2: Record<string, string>;
  const targets: Target[] = [];

  function fresh(opts: Parameters<typeof startTarget>[0] = {}): Target {
    const target = startTarget(opts);
    targets.push(target);
    return target;
  }

  const background: number[] = []; // process groups of deploys started in the background

  // Checks that no SSH control master is left, unless another deploy still runs.
  function deployTo(target: Target, closure: string, extra: Record<string, string> = {}, alone = true) {
    const r = runScript("deploy.sh", scriptEnv(target, { SYSTEM_CLOSURE: closure, ...extra }));
    if (alone) expect(leftoverControlMasters(target)).toEqual([]);
    return r;
  }

  function inBackground(target: Target, closure: string, extra: Record<string, string>) {
    const deploy = startScript("deploy.sh", scriptEnv(target, { SYSTEM_CLOSURE: closure, ...extra }));
    background.push(deploy.pid);
    return deploy;
  }

  function withBase(opts: Parameters<typeof startTarget>[0] = {}, extra: Record<string, string> = {}): Target {
    const target = fresh(opts);
    const r = deployTo(target, v2.base, opts.netns ? { PUBLISHED_ADDRESSES: target.addr4, ...extra } : extra);
    expect(r.stderr).toContain("Deployed:");
    expect(r.status).toBe(0);
    return target;
  }

  function pauseFile(): string {
    return path.join(fs.mkdtempSync(path.join(os.tmpdir(), "blog-pause-")), "paused");
  }

  beforeAll(() => {
    v2 = {
      base: buildClosure({ name: "v2-base" }),
      next: buildClosure({ name: "v2-next", changedDep: 1 }),
      other: buildClosure({ name: "v2-other", changedDep: 2 }),
      ahead: buildClosure({ name: "v2-ahead", changedDep: 3 }),
      failing: buildClosure({ name: "v2-failing", fail: true }),
      unhealthy: buildClosure({ name: "v2-unhealthy", healthy: false }),
    };
  });

  // The targets a test starts stop when it ends (each boots a systemd: few at a time, whatever
  // else runs on the machine); those a describe's beforeAll starts, when it ends.
  let mark = 0;
  beforeEach(() => {
    mark = targets.length;
  });

  afterEach(() => {
    for (const pid of background.splice(0)) killGroup(pid);
    for (const target of targets.splice(mark)) {
      for (const pid of leftoverControlMasters(target)) killGroup(pid);
      stopTarget(target);
    }
  });

  afterAll(() => {
    for (const target of targets) for (const pid of leftoverControlMasters(target)) killGroup(pid);
    for (const target of targets.splice(0)) stopTarget(target);
  });

  test("commit after verify: a new system runs first, and becomes the profile and boot default only once healthy", () => {
    const target = withBase();

    const r = deployTo(target, v2.next, { HEALTH_EXPECT: "blog ok v2-next" });

    expect(r.status).toBe(0);
    const order = ["switch-to-configuration test", "Checking health", "Committing"].map((s) => r.stderr.indexOf(s));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(currentSystem(target)).toBe(v2.next);
    expect(profileSystem(target)).toBe(v2.next);
    expect(bootDefault(target)).toBe(v2.next);
  });

  test("the profile ahead of the running system: a failed deploy returns to the running system (by path), not to the profile", () => {
    const target = withBase();
    // `nixos-rebuild boot` of another system: profile and boot default ahead of what runs.
    copyToTarget(target, v2.ahead);
    onTarget(target, `nix-env -p /nix/var/nix/profiles/system --set ${v2.ahead} && ${v2.ahead}/bin/switch-to-configuration boot`);
    expect(profileSystem(target)).toBe(v2.ahead);

    const r = deployTo(target, v2.failing);

    expect(r.stderr).toContain("the profile is not the running system");
    expect(r.stderr).toContain("making the running system the profile and boot default again first");
    expect(r.stderr).toMatch(new RegExp(`rolled back: the host runs generation \\d+ \\(${v2.base}\\) again, boots it`));
    expect(r.status).toBe(3);
    expect(currentSystem(target)).toBe(v2.base);
    expect(profileSystem(target)).toBe(v2.base);
    expect(bootDefault(target)).toBe(v2.base);
  });

  test("a reboot between activation and confirmation boots the last verified system; the deploy says so (exit 3)", async () => {
    const target = withBase();
    const pause = pauseFile();
    const deploy = inBackground(target, v2.next, { DEPLOY_TEST_PAUSE_AFTER: "activate", DEPLOY_TEST_PAUSE_FILE: pause });
    expect(await waitForAsync(() => fs.existsSync(pause), 30_000)).toBe(true);
    expect(currentSystem(target)).toBe(v2.next); // activated, not verified
    expect(bootDefault(target)).toBe(v2.base);

    rebootTarget(target);
    expect(currentSystem(target)).toBe(v2.base);
    fs.rmSync(pause);
    const r = await deploy.done;

    // The rebooted host answers the health check (it runs the base system): the drop shows at the
    // commit, which lists the failed units and commits in one request.
    expect(r.stderr).toMatch(/the connection to the target dropped during the (health check|commit)/);
    expect(r.stderr).toMatch(new RegExp(`rolled back: the host runs generation 1 \\(${v2.base}\\) again`));
    expect(r.status).toBe(3);
    expect(currentSystem(target)).toBe(v2.base);
    expect(profileSystem(target)).toBe(v2.base);
    expect(bootDefault(target)).toBe(v2.base);
    expect(leftoverControlMasters(target)).toEqual([]);
  });

  test("two deploys at once: the second waits a bounded time and refuses, naming the holder; a patient one runs after", async () => {
    const target = withBase();
    const pause = pauseFile();
    const first = inBackground(target, v2.next, {
      DEPLOY_ORIGIN: "deploy-one",
      DEPLOY_TEST_PAUSE_AFTER: "begin",
      DEPLOY_TEST_PAUSE_FILE: pause,
    });
    expect(await waitForAsync(() => fs.existsSync(pause), 30_000)).toBe(true);

    const impatient = deployTo(target, v2.other, { LOCK_WAIT: "1", DEPLOY_ORIGIN: "deploy-two" }, false);
    const patient = inBackground(target, v2.other, { LOCK_WAIT: "60", DEPLOY_ORIGIN: "deploy-three" });
    expect(await waitForAsync(() => patient.stderr().includes("waiting up to 60s"), 30_000)).toBe(true);
    fs.rmSync(pause);
    const [one, three] = await Promise.all([first.done, patient.done]);

    expect(impatient.status).toBe(2);
    expect(impatient.stderr).toMatch(
      new RegExp(`another deploy holds the target's lock: deploy-one \\(deploying ${v2.next}, since .* UTC, \\d+s ago; .*\\); waited 1s`),
    );
    expect(one.stderr).toContain("Deployed:");
    expect(one.status).toBe(0);
    expect(three.stderr).toContain("the deploy lock is held by deploy-one");
    expect(three.stderr).toContain("Deployed:");
    expect(three.status).toBe(0);
    expect(three.stderr).toContain(`the target runs ${v2.next}`); // it started after the first one committed
    expect(currentSystem(target)).toBe(v2.other);
    expect(bootDefault(target)).toBe(v2.other);
    expect(leftoverControlMasters(target)).toEqual([]);
  });

  test("the lock of a dead deployer is taken over; its unconfirmed system is returned before the next deploy", async () => {
    const target = withBase();
    const pause = pauseFile();
    const dead = inBackground(target, v2.next, {
      DEPLOY_ORIGIN: "deploy-dies",
      DEPLOY_TEST_PAUSE_AFTER: "activate",
      DEPLOY_TEST_PAUSE_FILE: pause,
    });
    expect(await waitForAsync(() => fs.existsSync(pause), 30_000)).toBe(true);
    expect(currentSystem(target)).toBe(v2.next);
    killGroup(dead.pid);
    await dead.done;
    for (const pid of leftoverControlMasters(target)) killGroup(pid); // its ssh master outlives it (ControlPersist)

    const r = deployTo(target, v2.unhealthy, { LOCK_WAIT: "30" });

    expect(r.stderr).toContain("took over the lock from a deploy that died: deploy-dies");
    expect(r.stderr).toContain(`that deploy's system ${v2.next} was never confirmed; the target returned to ${v2.base} first`);
    expect(r.stderr).toMatch(new RegExp(`rolled back: the host runs generation 1 \\(${v2.base}\\) again`));
    expect(r.status).toBe(3);
    expect(currentSystem(target)).toBe(v2.base);
    expect(profileSystem(target)).toBe(v2.base);
    expect(bootDefault(target)).toBe(v2.base);
  });

  test("both address families: a dual-stack host passes through its A and AAAA addresses", () => {
    const target = fresh({ netns: true });
    const addresses = `${target.addr4} ${target.addr6}`;

    const r = deployTo(target, v2.base, { PUBLISHED_ADDRESSES: addresses, HEALTH_URL: "http://blog.test/health.txt" });

    expect(r.stderr).toContain(`through ${target.addr4} ${target.addr6}`);
    expect(r.status).toBe(0);
  });

  test("HEALTH_VIA=ssh checks the site at the host's own port through the SSH connection, not through the addresses", () => {
    const target = fresh({ netns: true, ipv6: false });
    const n = target.netns.replace("blogt-", "");
    // An address no host answers (the firewall of a proxied origin): a direct check could never pass.
    const unreachable = `198.18.${n}.3`;

    const r = deployTo(target, v2.base, {
      PUBLISHED_ADDRESSES: unreachable,
      HEALTH_URL: "http://blog.test/health.txt",
      HEALTH_VIA: "ssh",
      HEALTH_TIMEOUT: "10",
    });

    expect(r.stderr).toContain("through the SSH connection, at the host's own port 80");
    expect(r.stderr).toContain("Deployed:");
    expect(r.status).toBe(0);
    expect(runScript("deploy.sh", scriptEnv(target, { SYSTEM_CLOSURE: v2.base, HEALTH_VIA: "tunnel" })).stderr).toContain(
      "HEALTH_VIA='tunnel' is not valid; expected direct",
    );
  });

  test("a host without IPv6 fails the check, naming the IPv6 address; it cannot pass after the rollback either (exit 4)", () => {
    const target = withBase({ netns: true, ipv6: false }, { HEALTH_URL: "http://blog.test/health.txt" });
    expect(target.addr6).toBe("");
    const n = target.netns.replace("blogt-", "");
    const addr6 = `fd42:b10b:${n}::2`;

    const r = deployTo(target, v2.next, {
      PUBLISHED_ADDRESSES: `${target.addr4},${addr6}`,
      HEALTH_URL: "http://blog.test/health.txt",
      HEALTH_TIMEOUT: "2",
    });

    expect(r.stderr).toContain(`deploy failed: health check: http://blog.test/health.txt did not pass within 2s through ${addr6} (IPv6, the AAAA record)`);
    expect(r.stderr).not.toContain(`through ${target.addr4} (IPv4`);
    expect(r.stderr).toMatch(/rolled back to generation 1 .*, but it is not healthy either: .*IPv6, the AAAA record/);
    expect(r.status).toBe(4);
    expect(currentSystem(target)).toBe(v2.base);
  });

  // switch-to-configuration exits 4 while any unit is failed after the switch, one that failed
  // before the deploy included: a start of every active target at its end runs again the units
  // they want that are not running (switch-to-configuration-ng, main.rs), an ACME order that
  // keeps failing among them. Here a oneshot wanted by multi-user.target that fails once
  // /var/lib/blog-flaky/fail exists plays it.
  describe("units that failed before the deploy", () => {
    const flaky = {
      "blog-flaky.service": {
        text: "[Unit]\nDescription=Fails once /var/lib/blog-flaky/fail exists, as an ACME order that keeps failing\n\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'test ! -e /var/lib/blog-flaky/fail'\n",
        wantedBy: ["multi-user.target"],
      },
    };
    let systems: Record<string, string>;
    let target: Target;

    beforeAll(() => {
      systems = {
        base: buildClosure({ name: "flaky-base", units: flaky }),
        next: buildClosure({ name: "flaky-next", changedDep: 1, units: flaky }),
        breaks: buildClosure({ name: "flaky-breaks", fail: true, units: flaky }),
      };
      target = fresh();
      const r = deployTo(target, systems.base);
      expect(r.status).toBe(0);
      // It fails now, days after the last deploy.
      tryOnTarget(target, "mkdir -p /var/lib/blog-flaky && touch /var/lib/blog-flaky/fail && systemctl start blog-flaky.service");
      expect(unitState(target, "blog-flaky.service")).toBe("failed");
    });

    test("a unit already failed before the deploy does not block it; the output says it failed before", () => {
      const r = deployTo(target, systems.next);

      expect(r.stderr).toMatch(/switch-to-configuration test .* exited 4: units failed before the deploy as well: blog-flaky\.service; they do not block it/);
      expect(r.stderr).toContain("Deployed:");
      expect(r.status).toBe(0);
      expect(currentSystem(target)).toBe(systems.next);
      expect(bootDefault(target)).toBe(systems.next);
      expect(unitState(target, "blog-flaky.service")).toBe("failed");
    });

    test("a unit the new system breaks fails the deploy, which rolls back; the output names it, and the unit that failed before", () => {
      const r = deployTo(target, systems.breaks);

      expect(r.stderr).toMatch(/deploy failed: activation failed \(switch-to-configuration test of \S+\): units failed: blog-broken\.service \(failed before the deploy as well, not counted: blog-flaky\.service\)/);
      expect(r.stderr).toMatch(new RegExp(`rolled back: the host runs generation \\d+ \\(${systems.next}\\) again, boots it, and passed the health check`));
      expect(r.status).toBe(3);
      expect(currentSystem(target)).toBe(systems.next);
      expect(bootDefault(target)).toBe(systems.next);
      expect(unitState(target, "blog-broken.service")).not.toBe("active");
    });
  });

  describe("where the system is built", () => {
    let flake: string;
    const nix = ["--extra-experimental-features", "nix-command flakes"];
    const offline = { NIX_CONFIG: TEST_NIX_CONFIG };

    beforeAll(() => {
      flake = fs.mkdtempSync(path.join(os.tmpdir(), "blog-flake-"));
      const suffix = path.basename(flake).replace(/[^A-Za-z0-9]/g, "");
      const local = process.arch === "arm64" ? "aarch64-linux" : "x86_64-linux";
      const foreign = process.arch === "arm64" ? "x86_64-linux" : "aarch64-linux";
      copyClosureSources(flake);
      fs.writeFileSync(
        path.join(flake, "flake.nix"),
        `{ outputs = { self }: {
            remote = import ./closures.nix { name = "remote-${suffix}"; system = "${local}"; modules = ./modules; };
            foreign = import ./closures.nix { name = "foreign-${suffix}"; system = "${foreign}"; modules = ./modules; };
          }; }`,
      );
    });

    afterAll(() => fs.rmSync(flake, { recursive: true, force: true }));

    function outPath(attr: string): string {
      return execFileSync("nix", [...nix, "eval", "--raw", `path:${flake}#${attr}.outPath`], { encoding: "utf8", env: process.env });
    }

    test("BUILD_ON=remote copies the derivation and builds the system on the target, never here", () => {
      const target = withBase();
      const closure = outPath("remote");

      const r = deployTo(target, closure, { ...offline, FLAKE_ATTR: `path:${flake}#remote`, BUILD_ON: "remote" });

      expect(r.stderr).toContain("Copying the derivation");
      expect(r.stderr).toContain(`built on the target: ${closure}`);
      expect(r.status).toBe(0);
      expect(run("nix-store", ["--check-validity", closure]).status).not.toBe(0); // not in the deployer's store
      expect(onTarget(target, `cat ${closure}/built-on`)).toBe("target");
      expect(currentSystem(target)).toBe(closure);
    });

    test("BUILD_ON=auto sends a system this machine cannot build to the target, and says what the target answered (exit 2)", () => {
      const target = withBase();
      const closure = outPath("foreign");

      const r = deployTo(target, closure, { ...offline, FLAKE_ATTR: `path:${flake}#foreign` });

      expect(r.stderr).toMatch(/BUILD_ON=auto: a \S+-linux system is built on the target/);
      expect(r.stderr).toContain("Copying the derivation");
      expect(r.stderr).toMatch(/is required to build/); // the target's own Nix refused: it is not that platform either
      expect(r.stderr).toContain("the target could not build or substitute");
      expect(r.status).toBe(2);
      expect(currentSystem(target)).toBe(v2.base);
    });
  });
});
