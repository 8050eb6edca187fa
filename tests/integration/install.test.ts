// install.sh against a real target (harness/target.sh: a container with
// systemd). nixos-anywhere itself cannot run here (it needs nixpkgs and
// kexec); NIXOS_ANYWHERE points at harness/fake-nixos-anywhere.sh, which
// copies the --extra-files tree onto the target and has its sshd reload, as
// the installed system would come back.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Target, closedPort, repoRoot, run, runScript, scriptEnv, startTarget, stopTarget } from "./harness/target";

jest.setTimeout(120_000);

const fakeNixosAnywhere = path.join(__dirname, "harness", "fake-nixos-anywhere.sh");
let target: Target | undefined;
let work: string;
let pinned: { publicKey: string; privateKey: string; fingerprint: string };

function t(): Target {
  if (!target) throw new Error("target not started");
  return target;
}

function presentedKey(): string {
  const r = run("ssh-keyscan", ["-T", "5", "-t", "ed25519", "-p", String(t().port), t().addr4], {
    timeoutMs: 15_000,
  });
  return r.stdout.split("\n").find((l) => l.includes("ssh-ed25519"))?.split(" ").slice(1, 3).join(" ") ?? "";
}

function install(extra: Record<string, string> = {}, target: Target = t()) {
  return runScript(
    "install.sh",
    scriptEnv(target, {
      HOME: path.join(work, "home"),
      HOST_KEY: pinned.publicKey,
      HOST_KEY_PRIVATE: pinned.privateKey,
      // What the server presents before the install, read out of band (its key file).
      BOOTSTRAP_HOST_KEY: fs.readFileSync(path.join(target.root, "etc/ssh/ssh_host_ed25519_key.pub"), "utf8").trim(),
      FLAKE: "./nix",
      NIXOS_ANYWHERE: fakeNixosAnywhere,
      FAKE_NA_LOG: path.join(work, "nixos-anywhere.args"),
      CONNECT_ATTEMPTS: "3",
      CONNECT_TIMEOUT: "15",
      ...extra,
    }),
  );
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "blog-install-"));
  fs.mkdirSync(path.join(work, "home", ".ssh"), { recursive: true });
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "pinned", "-f", path.join(work, "pinned")]);
  pinned = {
    publicKey: fs.readFileSync(path.join(work, "pinned.pub"), "utf8").trim(),
    privateKey: fs.readFileSync(path.join(work, "pinned"), "utf8"),
    fingerprint: execFileSync("ssh-keygen", ["-lf", path.join(work, "pinned.pub")], { encoding: "utf8" }).split(" ")[1],
  };
  target = startTarget();
});

afterAll(() => {
  stopTarget(target);
  fs.rmSync(work, { recursive: true, force: true });
});

test("an unreachable server is refused before nixos-anywhere runs (exit 2)", () => {
  const r = install({ TARGET_PORT: String(closedPort()), CONNECT_ATTEMPTS: "2" });

  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/timed out: .* did not answer after 2 attempts/);
  expect(fs.existsSync(path.join(work, "nixos-anywhere.args"))).toBe(false);
});

test("even traced with bash -x, install.sh and deploy.sh never print a secret", () => {
  const secretLines = [...pinned.privateKey.split("\n"), ...t().clientKey.split("\n")].filter((l) => l.length > 20);
  const env = scriptEnv(t(), {
    HOME: path.join(work, "home"),
    HOST_KEY: pinned.publicKey,
    HOST_KEY_PRIVATE: pinned.privateKey,
    BOOTSTRAP_HOST_KEY: t().hostKey, // past the input checks: the keys are written, then the wait fails
    NIXOS_ANYWHERE: "/bin/false",
    TARGET_PORT: String(closedPort()),
    CONNECT_ATTEMPTS: "1",
    SYSTEM_CLOSURE: "/nix/store/00000000000000000000000000000000-nixos-system-absent",
  });

  for (const script of ["install.sh", "deploy.sh"]) {
    const r = run("bash", ["-x", path.join(repoRoot, "scripts", script)], { env, timeoutMs: 60_000 });
    expect(r.stderr).toContain("+ "); // tracing was on
    for (const line of secretLines) expect(r.stdout + r.stderr).not.toContain(line);
  }
});

test("a private host key that does not match HOST_KEY is bad input (exit 1) and is not printed", () => {
  const other = path.join(work, "other");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", other]);
  const otherPrivate = fs.readFileSync(other, "utf8");

  const r = install({ HOST_KEY_PRIVATE: otherPrivate });

  expect(r.status).toBe(1);
  expect(r.stderr).toContain("HOST_KEY_PRIVATE does not belong to HOST_KEY");
  expect(r.stdout + r.stderr).not.toContain(otherPrivate.split("\n")[1]);
});

test("install gives the server the pinned host key and verifies it with a strict login", () => {
  expect(presentedKey()).not.toBe(pinned.publicKey.split(" ").slice(0, 2).join(" "));

  const r = install();

  expect(r.stderr).toContain("the server presents the pinned key");
  expect(r.stderr).toContain("Installed:");
  expect(r.status).toBe(0);
  expect(presentedKey()).toBe(pinned.publicKey.split(" ").slice(0, 2).join(" "));
  expect(fs.existsSync(path.join(work, "home", ".ssh", "known_hosts"))).toBe(false);
});

test("nixos-anywhere gets --flake, --target-host, --ssh-port and --extra-files, and no secret", () => {
  const args = fs.readFileSync(path.join(work, "nixos-anywhere.args"), "utf8").trim().split("\n");

  const after = (flag: string) => args[args.indexOf(flag) + 1];
  expect(after("--flake")).toBe("./nix#blog");
  expect(after("--target-host")).toBe(`root@${t().addr4}`);
  expect(after("--ssh-port")).toBe(String(t().port));
  expect(after("--extra-files")).toMatch(/\/blog-deploy\.\d+-[\d-]+\.\w+\/extra-files$/); // in the work directory, on a tmpfs
  expect(after("--build-on")).toBe("auto");
  expect(args).toContain("-i");
  expect(args).not.toContain("--no-substitute-on-destination");
  expect(args).not.toContain("SECRET-IN-ENVIRONMENT");
  const secretLines = [...pinned.privateKey.split("\n"), ...t().clientKey.split("\n")].filter((l) => l.length > 20);
  for (const line of secretLines) expect(args.join("\n")).not.toContain(line);
});

test("a server that comes back with another host key fails the install (exit 4, names both keys)", () => {
  const r = install({ FAKE_NA_OTHER_KEY: "1", CONNECT_ATTEMPTS: "2", CONNECT_TIMEOUT: "8" });

  expect(r.status).toBe(4);
  expect(r.stderr).toMatch(/host key mismatch after install: .* presents SHA256:\S+, expected the pinned HOST_KEY/);
  expect(r.stderr).toContain(pinned.fingerprint);
  expect(r.stderr).not.toContain("Installed:");
});

test("BUILD_ON reaches nixos-anywhere as --build-on (remote: an Arm host from an x86 machine); a bad value is refused (exit 1)", () => {
  const bad = install({ BUILD_ON: "elsewhere" });
  const remote = install({ BUILD_ON: "remote" });

  expect(bad.status).toBe(1);
  expect(bad.stderr).toContain("BUILD_ON='elsewhere' is not valid; expected auto, local or remote");
  expect(remote.status).toBe(0);
  const args = fs.readFileSync(path.join(work, "nixos-anywhere.args"), "utf8").trim().split("\n");
  expect(args[args.indexOf("--build-on") + 1]).toBe("remote");
});

describe("install verification at every published address", () => {
  const targets: Target[] = [];
  afterEach(() => targets.splice(0).forEach((target) => stopTarget(target)));

  test("a dual-stack server answers at its A and AAAA addresses with the pinned key", () => {
    const target = startTarget({ netns: true });
    targets.push(target);

    const r = install({ PUBLISHED_ADDRESSES: `${target.addr4} ${target.addr6}` }, target);

    expect(r.stderr).toContain(`it answers at ${target.addr4} with the pinned host key`);
    expect(r.stderr).toContain(`it answers at ${target.addr6} with the pinned host key`);
    expect(r.stderr).toContain("Installed:");
    expect(r.status).toBe(0);
  });

  test("a server without IPv6 fails the install verification, naming the IPv6 address (exit 4)", () => {
    const target = startTarget({ netns: true, ipv6: false });
    targets.push(target);
    const addr6 = `fd42:b10b:${target.netns.replace("blogt-", "")}::2`;

    const r = install({ PUBLISHED_ADDRESSES: `${target.addr4} ${addr6}`, CONNECT_ATTEMPTS: "2", CONNECT_TIMEOUT: "10" }, target);

    expect(r.stderr).toContain(`it answers at ${target.addr4} with the pinned host key`);
    expect(r.stderr).toContain(`installed, but the server does not answer at ${addr6} (IPv6, the AAAA record) port 22 after 2 attempts`);
    expect(r.stderr).not.toContain("Installed:");
    expect(r.status).toBe(4);
  });
});

describe("pinned from the first packet: a server that presents another key than BOOTSTRAP_HOST_KEY gets nothing", () => {
  const targets: Target[] = [];
  afterAll(() => targets.forEach((target) => stopTarget(target)));

  /** What the target holds under /etc/ssh: each file's name and content. */
  function etcSsh(target: Target): Record<string, string> {
    const dir = path.join(target.root, "etc/ssh");
    const files = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile());
    return Object.fromEntries(files.sort().map((f) => [f, fs.readFileSync(path.join(dir, f), "utf8")]));
  }

  function expectNothingSent(target: Target, before: Record<string, string>) {
    expect(etcSsh(target)).toEqual(before); // no extra files arrived
    // The permanent host key least of all: none of its private key's lines (the first base64 line is
    // the same in every unencrypted key) anywhere on the target.
    const lines = pinned.privateKey.trim().split("\n").slice(2, -1);
    const patterns = path.join(work, "pinned-lines");
    fs.writeFileSync(patterns, `${lines.join("\n")}\n`);
    expect(run("grep", ["-rlsF", "-f", patterns, target.dir]).stdout).toBe("");
  }

  test("at the first contact: refused (exit 2) within the bound, naming both keys; nixos-anywhere never runs", () => {
    const target = startTarget();
    targets.push(target);
    const before = etcSsh(target);
    const log = path.join(work, "first-contact.args");
    const other = fs.readFileSync(path.join(work, "pinned.pub"), "utf8").trim(); // any key but the target's

    const r = install({ BOOTSTRAP_HOST_KEY: other, FAKE_NA_LOG: log, CONNECT_ATTEMPTS: "2", CONNECT_TIMEOUT: "10" }, target);

    expect(r.status).toBe(2);
    expect(r.stderr).toContain("host key mismatch before the install");
    expect(r.stderr).toContain(`expected ${pinned.fingerprint}`);
    expect(r.stderr).toMatch(/it presents: SHA256:\S+ \(ED25519\)\); nothing was sent to it/);
    expect(fs.existsSync(log)).toBe(false);
    expectNothingSent(target, before);
  });

  test("after the first contact (the installer presents another key): nixos-anywhere's own connections refuse it (exit 4), nothing is sent", () => {
    const target = startTarget();
    targets.push(target);
    // The stand-in nixos-anywhere, started after the first contact passed, finds the target with
    // a new host key, as a machine in the middle of the kexec would present one.
    const swap = path.join(work, "swap-then-install.sh");
    fs.writeFileSync(
      swap,
      `#!/bin/sh\nbash ${path.join(repoRoot, "tests/integration/harness/target.sh")} set-host-key ${target.dir} >/dev/null && exec ${fakeNixosAnywhere} "$@"\n`,
      { mode: 0o755 },
    );
    const r = install({ NIXOS_ANYWHERE: swap, CONNECT_ATTEMPTS: "2", CONNECT_TIMEOUT: "10" }, target);
    const swapped = etcSsh(target);

    expect(r.stderr).toContain("Host key verification failed");
    expect(r.stderr).toContain("nixos-anywhere failed");
    expect(r.stderr).not.toContain("Installed:");
    expect(r.status).toBe(4);
    expect(swapped["ssh_host_ed25519_key.pub"]).not.toContain(pinned.publicKey.split(" ")[1]);
    expectNothingSent(target, swapped);
  });

  test("BOOTSTRAP_HOST_KEY is required: the install never trusts a first key it sees (exit 1)", () => {
    const r = install({ BOOTSTRAP_HOST_KEY: "" });

    expect(r.status).toBe(1);
    expect(r.stderr).toContain("BOOTSTRAP_HOST_KEY is not set; it is required");
  });
});
