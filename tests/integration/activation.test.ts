// The test systems' switch-to-configuration (harness/switch-to-configuration.py, modelled on
// nixpkgs' switch-to-configuration-ng) against the real systemd of a test target: what it does to
// units whose files are added, changed and removed, what X-StopIfChanged, X-RestartIfChanged and
// X-ReloadIfChanged change, the start of every active target at its end (and what that runs
// again), the mounts of the new fstab, when it exits 4, and its actions. The deploy relies on each
// (scripts/deploy.sh, target-shim.sh). The tests run in order on one target.
import {
  RunResult,
  Target,
  bootDefault,
  buildClosure,
  copyToTarget,
  currentSystem,
  installSystem,
  onTarget,
  startTarget,
  stopTarget,
  tryOnTarget,
  unitState,
} from "./harness/target";

jest.setTimeout(180_000);

let target: Target | undefined;
let systems: Record<string, string>;

function t(): Target {
  if (!target) throw new Error("target not started");
  return target;
}

/** A long-running service; `extra` lines go into [Service]. */
const daemon = (description: string, extra = "") => `[Unit]\nDescription=${description}\n\n[Service]\nExecStart=/bin/sleep infinity\n${extra}`;
/** A oneshot that counts its runs in /var/lib/blog-counts/<name>. */
const counter = (name: string, extra = "") =>
  `[Unit]\nDescription=Counts its runs (${name})\n${extra}\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'mkdir -p /var/lib/blog-counts && echo run >> /var/lib/blog-counts/${name}'\n`;
const wanted = (text: string, by = "multi-user.target") => ({ text, wantedBy: [by] });
const tmpfs = (size: string) => ({ device: "tmpfs", fsType: "tmpfs", options: [`size=${size}`] });

/** The units of a system: `version` changes the ones a new system changes. */
function units(version: number) {
  return {
    "blog-changed.service": wanted(daemon("Changes with each system", `Environment=VERSION=${version}\n`)),
    "blog-restarted.service": wanted(daemon("Restarted, not stopped and started", `X-StopIfChanged=false\nEnvironment=VERSION=${version}\n`)),
    "blog-kept.service": wanted(daemon("Left alone when it changes", `X-RestartIfChanged=false\nEnvironment=VERSION=${version}\n`)),
    "blog-reloaded.service": wanted(
      daemon(
        "Reloaded when it changes",
        `X-ReloadIfChanged=true\nExecReload=/bin/sh -c 'mkdir -p /var/lib/blog-counts && echo reload >> /var/lib/blog-counts/reloaded'\nEnvironment=VERSION=${version}\n`,
      ),
    ),
    // Without RemainAfterExit, wanted by sysinit.target: inactive after each run.
    "blog-again.service": wanted(counter("again", "DefaultDependencies=no\nBefore=sysinit.target\n"), "sysinit.target"),
    "blog-plain.target": wanted("[Unit]\nDescription=An ordinary target\n"),
    "blog-plain-ping.service": wanted(counter("plain-ping"), "blog-plain.target"),
    "blog-refusing.target": wanted("[Unit]\nDescription=A target that refuses a manual start\nRefuseManualStart=yes\n"),
    "blog-refusing-ping.service": wanted(counter("refusing-ping"), "blog-refusing.target"),
    // Fails while /run/blog-flaky-fail exists, as an ACME order that keeps failing.
    "blog-flaky.service": wanted("[Unit]\nDescription=Fails on demand\n\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'test ! -e /run/blog-flaky-fail'\n"),
  };
}

const count = (name: string) => Number(onTarget(t(), `cat /var/lib/blog-counts/${name} 2>/dev/null | wc -l`));
const invocation = (unit: string) => onTarget(t(), `systemctl show -p InvocationID --value ${unit}`);
const fsSize = (mountPoint: string) => onTarget(t(), `findmnt -n -o SIZE --mountpoint ${mountPoint} || true`);

/** switch-to-configuration ACTION of a system (copied to the target first). */
function switchTo(system: string, action = "switch"): RunResult {
  copyToTarget(t(), system);
  return tryOnTarget(t(), `${system}/bin/switch-to-configuration ${action}`, 120_000);
}

/** The units a line of its output lists ("starting the following units: a, b"). */
function listedAfter(stderr: string, prefix: string): string[] {
  const line = stderr.split("\n").find((l) => l.startsWith(prefix)) ?? "";
  return line.slice(prefix.length).split(", ").filter((u) => u !== "").sort();
}

beforeAll(() => {
  systems = {
    first: buildClosure({
      name: "activation-first",
      units: { ...units(1), "blog-removed.service": wanted(daemon("Only in the first system")) },
      fileSystems: { "/mnt/kept": tmpfs("1m"), "/mnt/resized": tmpfs("1m"), "/mnt/gone": tmpfs("1m") },
    }),
    second: buildClosure({
      name: "activation-second",
      units: { ...units(2), "blog-added.service": wanted(daemon("Only in the second system")) },
      fileSystems: { "/mnt/kept": tmpfs("1m"), "/mnt/resized": tmpfs("2m"), "/mnt/new": tmpfs("1m") },
    }),
    third: buildClosure({ name: "activation-third", units: units(3) }),
    broken: buildClosure({ name: "activation-broken", fail: true, units: units(3) }),
    crashing: buildClosure({
      name: "activation-crashing",
      units: { ...units(3), "blog-crashing.service": wanted("[Unit]\nDescription=Exits 3 at once, restarted an hour later\n\n[Service]\nExecStart=/bin/sh -c 'exit 3'\nRestart=always\nRestartSec=1h\n") },
    }),
  };
  target = startTarget();
  const r = installSystem(t(), systems.first);
  if (r.status !== 0) throw new Error(`installing the first system failed: ${r.stderr}`);
});

afterAll(() => stopTarget(target));

describe("a switch to a system whose units and mounts changed", () => {
  let before: Record<string, string>;
  let counts: Record<string, number>;
  let r: RunResult;

  beforeAll(() => {
    before = Object.fromEntries(
      ["blog-changed.service", "blog-restarted.service", "blog-kept.service", "blog-reloaded.service"].map((u) => [u, invocation(u)]),
    );
    counts = { again: count("again"), plain: count("plain-ping"), refusing: count("refusing-ping"), reloaded: count("reloaded") };
    expect(unitState(t(), "blog-refusing.target")).toBe("active"); // pulled in by multi-user.target at the first switch
    expect(fsSize("/mnt/resized")).toBe("1M");
    r = switchTo(systems.second);
  });

  test("exits 0; the system runs and is the boot default", () => {
    expect(r.stderr).not.toContain("warning: the following units failed");
    expect(r.status).toBe(0);
    expect(currentSystem(t())).toBe(systems.second);
    expect(bootDefault(t())).toBe(systems.second);
  });

  test("a changed service is stopped before the activation and started after it (X-StopIfChanged, true by default)", () => {
    expect(listedAfter(r.stderr, "stopping the following units: ")).toContain("blog-changed.service");
    expect(listedAfter(r.stderr, "starting the following units: ")).toContain("blog-changed.service");
    expect(r.stderr.indexOf("stopping the following units")).toBeLessThan(r.stderr.indexOf("activating the configuration"));
    expect(invocation("blog-changed.service")).not.toBe(before["blog-changed.service"]);
    expect(onTarget(t(), "systemctl show -p Environment --value blog-changed.service")).toBe("VERSION=2");
  });

  test("X-StopIfChanged=false: restarted after the activation instead", () => {
    expect(listedAfter(r.stderr, "restarting the following units: ")).toContain("blog-restarted.service");
    expect(listedAfter(r.stderr, "stopping the following units: ")).not.toContain("blog-restarted.service");
    expect(invocation("blog-restarted.service")).not.toBe(before["blog-restarted.service"]);
  });

  test("X-RestartIfChanged=false (restartIfChanged = false): left alone, still running as it was", () => {
    expect(listedAfter(r.stderr, "NOT restarting the following changed units: ")).toContain("blog-kept.service");
    expect(invocation("blog-kept.service")).toBe(before["blog-kept.service"]);
    expect(onTarget(t(), "systemctl show -p Environment --value blog-kept.service")).toBe("VERSION=2"); // its new file is loaded
  });

  test("X-ReloadIfChanged=true: reloaded, not restarted", () => {
    expect(listedAfter(r.stderr, "reloading the following units: ")).toContain("blog-reloaded.service");
    expect(count("reloaded")).toBe(counts.reloaded + 1);
    expect(invocation("blog-reloaded.service")).toBe(before["blog-reloaded.service"]);
  });

  test("a unit gone from the new system is stopped; a new one wanted by an active target is started (after the daemon-reload)", () => {
    expect(listedAfter(r.stderr, "stopping the following units: ")).toContain("blog-removed.service");
    expect(unitState(t(), "blog-removed.service")).toBe("inactive");
    expect(listedAfter(r.stderr, "the following new units were started: ")).toContain("blog-added.service");
    expect(unitState(t(), "blog-added.service")).toBe("active");
    expect(onTarget(t(), "systemctl show -p FragmentPath --value blog-added.service")).toBe("/etc/systemd/system.attached/blog-added.service");
  });

  test("every active target is started at the end: a oneshot an active target wants, inactive after its run, runs again (sysinit.target's too); not for a target with RefuseManualStart", () => {
    expect(count("again")).toBe(counts.again + 1);
    expect(count("plain-ping")).toBe(counts.plain + 1);
    expect(count("refusing-ping")).toBe(counts.refusing);
  });

  test("the mounts of the new fstab: a removed one is unmounted, one with new options remounted, a new one mounted (by local-fs.target's start)", () => {
    expect(fsSize("/mnt/gone")).toBe("");
    expect(fsSize("/mnt/resized")).toBe("2M");
    expect(fsSize("/mnt/new")).toBe("1M");
    expect(fsSize("/mnt/kept")).toBe("1M");
  });
});

describe("exit 4", () => {
  afterEach(() => {
    const back = switchTo(systems.third);
    expect(back.status).toBe(0);
  });

  test("a unit of the new system that fails to start: exit 4, naming it", () => {
    const r = switchTo(systems.broken);

    expect(r.stderr).toContain("warning: the following units failed: blog-broken.service");
    expect(r.status).toBe(4);
    expect(currentSystem(t())).toBe(systems.broken); // switched all the same
  });

  test("a service restarting after a failure (auto-restart, non-zero status) counts as failed: exit 4", () => {
    const r = switchTo(systems.crashing);

    expect(unitState(t(), "blog-crashing.service")).toBe("activating");
    expect(r.stderr).toContain("warning: the following units failed: blog-crashing.service");
    expect(r.status).toBe(4);
  });

  test("a unit that failed before the switch and that an active target wants fails again: exit 4 (the failed states are reset, then the targets' start runs it again)", () => {
    tryOnTarget(t(), "touch /run/blog-flaky-fail && systemctl start blog-flaky.service");
    expect(unitState(t(), "blog-flaky.service")).toBe("failed");

    const r = switchTo(systems.third);

    expect(r.stderr).toContain("warning: the following units failed: blog-flaky.service");
    expect(r.status).toBe(4);
    onTarget(t(), "rm -f /run/blog-flaky-fail && systemctl reset-failed");
  });

  test("a unit failed before that no target wants is forgotten (reset-failed): no exit 4 for it", () => {
    tryOnTarget(t(), "systemd-run --unit=blog-one-off /bin/false; sleep 0.5");
    expect(unitState(t(), "blog-one-off.service")).toBe("failed");

    const r = switchTo(systems.third);

    expect(r.status).toBe(0);
    expect(unitState(t(), "blog-one-off.service")).toBe("inactive");
  });
});

describe("its actions", () => {
  test("boot makes a system the boot default and changes nothing that runs; test runs one and leaves the boot default; switch does both", () => {
    expect(currentSystem(t())).toBe(systems.third);

    const boot = switchTo(systems.second, "boot");
    expect(boot.status).toBe(0);
    expect(bootDefault(t())).toBe(systems.second);
    expect(currentSystem(t())).toBe(systems.third);

    const test = switchTo(systems.first, "test");
    expect(test.status).toBe(0);
    expect(currentSystem(t())).toBe(systems.first);
    expect(bootDefault(t())).toBe(systems.second);

    const sw = switchTo(systems.third, "switch");
    expect(sw.status).toBe(0);
    expect(currentSystem(t())).toBe(systems.third);
    expect(bootDefault(t())).toBe(systems.third);
  });

  test("dry-activate says what a switch would do and does nothing", () => {
    const before = invocation("blog-changed.service");

    const r = switchTo(systems.second, "dry-activate");

    expect(r.status).toBe(0);
    expect(r.stderr).toContain("would activate the configuration...");
    expect(listedAfter(r.stderr, "would stop the following units: ")).toContain("blog-changed.service");
    expect(listedAfter(r.stderr, "would NOT stop the following changed units: ")).toContain("blog-kept.service");
    expect(listedAfter(r.stderr, "would reload the following units: ")).toContain("blog-reloaded.service");
    expect(currentSystem(t())).toBe(systems.third);
    expect(invocation("blog-changed.service")).toBe(before);
  });

  test("a second switch at the same time is refused (its lock), as NixOS's is", () => {
    const r = tryOnTarget(t(), `flock /run/nixos/switch-to-configuration.lock ${systems.third}/bin/switch-to-configuration test`);

    expect(r.stderr).toContain("Could not acquire lock");
    expect(r.status).toBe(1);
  });
});
