// The deploy's lower-level safety promises, against a real target (harness/target.sh): the scripts
// the shim leaves on the host quote every value, unit names are checked wherever the deploy handles
// them, one store-path pattern (scripts/lib/patterns.sh) judges a closure on both sides, and the
// files that hold keys live on a tmpfs and never outlive a killed deployer past the next run.
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import {
  RunResult,
  Target,
  buildClosure,
  killGroup,
  leftoverControlMasters,
  onTarget,
  repoRoot,
  run,
  runScript,
  scriptEnv,
  startScript,
  startTarget,
  stopTarget,
  waitForAsync,
} from "./harness/target";
import { nixEnv } from "../nixConfig";

jest.setTimeout(180_000);

let target: Target;
let work: string;
let counter = 0;

function deploy(closure: string, extra: Record<string, string> = {}): RunResult {
  return runScript("deploy.sh", scriptEnv(target, { SYSTEM_CLOSURE: closure, LOCK_WAIT: "30", ...extra }));
}

/** A fake system closure (harness/closures.nix) that carries etc/blog/secret-units. */
function closureWithUnits(name: string, units: string): string {
  const args = [path.join(work, "closure.nix"), "--no-out-link", "--option", "substituters", "", "--argstr", "name", name];
  args.push("--argstr", "units", units);
  const r = run("nix-build", args, { timeoutMs: 120_000 });
  if (r.status !== 0) throw new Error(`nix-build ${name} exited ${r.status}: ${r.stderr}`);
  return r.stdout.trim();
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "blog-hardening-"));
  fs.writeFileSync(
    path.join(work, "closure.nix"),
    `{ name, units }:
let base = import ${path.join(repoRoot, "tests/integration/harness/closures.nix")} { inherit name; };
in derivation (base.drvAttrs // {
  secretUnits = units;
  args = [ "-c" ((builtins.elemAt base.drvAttrs.args 1) + "\\nmkdir -p $out/etc/blog\\nprintf '%s' \\"$secretUnits\\" > $out/etc/blog/secret-units\\n") ];
})
`,
  );
  target = startTarget();
  const r = deploy(buildClosure({ name: `hardening-base-${process.pid}` }));
  if (r.status !== 0) throw new Error(`the base deploy failed: ${r.stderr}`);
});

afterAll(() => {
  stopTarget(target);
  fs.rmSync(work, { recursive: true, force: true });
});

describe("one store-path pattern", () => {
  test.each([
    ["a hash with a letter Nix's base32 lacks (e)", "/nix/store/e0000000000000000000000000000000-nixos-system-x"],
    ["a hash one character short", "/nix/store/0000000000000000000000000000000-nixos-system-x"],
    ["a name with a space", "/nix/store/00000000000000000000000000000000-nixos system"],
    ["a name with a shell character", "/nix/store/00000000000000000000000000000000-x$(id)"],
    ["a path below a store path", "/nix/store/00000000000000000000000000000000-x/bin"],
  ])("SYSTEM_CLOSURE with %s is bad input (exit 1)", (_what, closure) => {
    const r = deploy(closure);

    expect(r.stderr).toContain("SYSTEM_CLOSURE='");
    expect(r.stderr).toContain("is not valid; expected a store path /nix/store/<32 characters of Nix's base32>-<name>");
    expect(r.status).toBe(1);
  });
});

describe("the shim's survey judges every path it is asked about (one grep for thousands), before nix-store sees any", () => {
  const shim = path.join(repoRoot, "scripts/target-shim.sh");
  const good = "/nix/store/00000000000000000000000000000000-good";
  const other = "/nix/store/11111111111111111111111111111111-other";
  const survey = (...paths: string[]): RunResult => run("bash", [shim, "survey", ...paths], { env: { PATH: process.env.PATH, ...nixEnv() } });

  test("store paths: the ones this store lacks are listed, then the free space", () => {
    const r = survey(good, other);

    expect(r.stderr).toBe("");
    expect(r.stdout).toContain(`missing=${good}\nmissing=${other}\n`);
    expect(r.stdout).toMatch(/^nix_free=\d+$/m);
    expect(r.status).toBe(0);
  });

  test.each([
    ["a hash with a letter Nix's base32 lacks", "/nix/store/e0000000000000000000000000000000-x"],
    ["a shell word", "/nix/store/00000000000000000000000000000000-x$(id)"],
    ["an empty argument", ""],
    ["an option", "--delete"],
    ["two store paths in one argument (a newline)", `${good}\n${other}`],
  ])("%s among store paths is refused, and nothing is surveyed", (_what, bad) => {
    const r = survey(good, bad, other);

    expect(r.stderr).toMatch(/^target: a path to survey/);
    expect(r.stdout).toBe("");
    expect(r.status).toBe(1);
  });
});

test("the scripts the shim leaves on the host quote every store path (a name with '?', a glob character)", async () => {
  const closure = buildClosure({ name: `q?x=${++counter}` });
  const pause = path.join(work, "pause");
  const running = onTarget(target, "readlink -e /run/current-system");
  const deploying = startScript("deploy.sh", scriptEnv(target, { SYSTEM_CLOSURE: closure, DEPLOY_TEST_PAUSE_AFTER: "activate", DEPLOY_TEST_PAUSE_FILE: pause }));
  let scripts = "";
  try {
    expect(await waitForAsync(() => fs.existsSync(pause), 60_000)).toBe(true);
    scripts = onTarget(target, "cd /run/blog-deploy/deploy && cat return.sh rollback.sh commit.sh secrets.sh");
  } finally {
    fs.rmSync(pause, { force: true });
  }
  const r = await deploying.done;

  expect(r.stderr).toContain("Deployed:");
  expect(r.status).toBe(0);
  expect(scripts).toContain(`'${running}'`);
  expect(scripts).toContain(`'${closure}'`);
  // Every path of the store or the deploy's state starts a quoted word.
  const unquoted = scripts.split("\n").filter((line) => !line.trimStart().startsWith("#") && /(^|[^'/\w])\/(nix|run)\//.test(line));
  expect(unquoted).toEqual([]);
});

test("unit names from the system's secret-units are checked: an option, a name without a unit type, a shell word are ignored", () => {
  const closure = closureWithUnits(`units-${++counter}`, "hardeningKey -H --now blog.service foo $(id).service nginx.service\n");
  const r = deploy(closure, { HOST_SECRETS: "hardeningKey", HOST_SECRET_hardeningKey: `value-${counter}` });

  expect(r.status).toBe(0);
  for (const bad of ["-H", "--now", "foo", "$(id).service"]) {
    expect(r.stderr).toContain(`'${bad}' is not a unit name`);
  }
  expect(r.stderr).toMatch(/the units that use them: blog\.service nginx\.service\n/);
});

/** The scripts' work directories of process `pid`, wherever the tmpfs is (scripts/lib/common.sh: runtime_base). */
function workDirsOf(pid: number): string[] {
  const bases = [process.env.XDG_RUNTIME_DIR ?? "", `/run/user/${process.getuid?.() ?? 0}`, "/dev/shm", os.tmpdir()];
  return bases
    .filter((b) => b && fs.existsSync(b))
    .flatMap((b) => fs.readdirSync(b).filter((n) => n.startsWith(`blog-deploy.${pid}-`)).map((n) => path.join(b, n)));
}

/** deploy.sh's SSH control masters still running for the target (others' deploys run meanwhile). */
function mastersFor(t: Target): number[] {
  return leftoverControlMasters().filter((pid) => {
    try {
      const args = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      return args.includes(`root@${t.addr4}`) && args.join(" ").includes(`-p ${t.port}`);
    } catch {
      return false; // gone meanwhile
    }
  });
}

test("the login key of a deployer killed with SIGKILL is on a tmpfs (0700), and the next run removes it and its SSH master", async () => {
  const pause = path.join(work, "pause-kill");
  const killed = startScript(
    "deploy.sh",
    scriptEnv(target, { SYSTEM_CLOSURE: buildClosure({ name: `killed-${++counter}` }), DEPLOY_TEST_PAUSE_AFTER: "begin", DEPLOY_TEST_PAUSE_FILE: pause }),
  );
  expect(await waitForAsync(() => fs.existsSync(pause), 60_000)).toBe(true);
  const dirs = workDirsOf(killed.pid);
  expect(dirs).toHaveLength(1);
  const [dir] = dirs;
  expect(fs.existsSync(path.join(dir, "id_deploy"))).toBe(true); // ssh -i needs the key as a file
  expect(run("stat", ["-f", "-c", "%T", dir]).stdout.trim()).toMatch(/^(tmpfs|ramfs)$/);
  expect(fs.statSync(dir).mode & 0o777).toBe(0o700);

  killGroup(killed.pid); // as pulumi-command cancels: no exit trap runs
  await killed.done;
  fs.rmSync(pause, { force: true });
  expect(fs.existsSync(path.join(dir, "id_deploy"))).toBe(true);
  expect(mastersFor(target)).toHaveLength(1); // its connection outlives it (ControlPersist)

  const next = deploy(buildClosure({ name: `after-kill-${++counter}` }));

  expect(next.status).toBe(0);
  expect(fs.existsSync(dir)).toBe(false);
  expect(workDirsOf(killed.pid)).toEqual([]);
  expect(mastersFor(target)).toEqual([]);
});

describe("the operator's ssh_config does not reach the deploy's connections", () => {
  // deploy.sh runs in a mount namespace of its own where /etc/ssh/ssh_config (which ssh reads
  // after ~/.ssh/config; -F replaces both) is a hostile file.
  function deployUnder(config: string, closure: string, extra: Record<string, string> = {}): { pid: number; done: Promise<RunResult> } {
    const file = path.join(work, `ssh_config-${++counter}`);
    fs.writeFileSync(file, config);
    const script = 'mount --bind "$1" /etc/ssh/ssh_config && shift && exec "$@"';
    const child = spawn(
      "unshare",
      ["--mount", "--propagation", "private", "sh", "-c", script, "sh", file, path.join(repoRoot, "scripts", "deploy.sh")],
      { env: scriptEnv(target, { SYSTEM_CLOSURE: closure, LOCK_WAIT: "30", ...extra }), detached: true, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => killGroup(child.pid ?? 0), 120_000);
    const done = new Promise<RunResult>((resolve) =>
      child.on("close", (status: number | null) => {
        clearTimeout(timer);
        resolve({ status, stdout, stderr });
      }),
    );
    return { pid: child.pid ?? 0, done };
  }

  test("a ProxyCommand in ssh_config is not used (a jump host only through SSH_PROXY_JUMP)", async () => {
    const marker = path.join(work, `proxy-ran-${++counter}`);
    const r = await deployUnder(`Host *\n  ProxyCommand /bin/sh -c 'touch ${marker}; exit 1'\n`, buildClosure({ name: `proxy-${counter}` })).done;

    expect(r.stderr).toContain("Deployed:");
    expect(r.status).toBe(0);
    expect(fs.existsSync(marker)).toBe(false);
  });

  test("ForwardAgent, LocalCommand and KnownHostsCommand in ssh_config do nothing: no agent on the host, no command here", async () => {
    const markers = { local: path.join(work, `local-ran-${++counter}`), known: path.join(work, `known-ran-${counter}`) };
    const agentSock = path.join(work, `agent-${counter}.sock`);
    const agent = run("ssh-agent", ["-a", agentSock]);
    const agentPid = Number(/SSH_AGENT_PID=(\d+)/.exec(agent.stdout)?.[1]);
    const pause = path.join(work, `pause-config-${counter}`);
    try {
      const config = [
        "Host *",
        "  ForwardAgent yes",
        "  ForwardX11 yes",
        "  PermitLocalCommand yes",
        `  LocalCommand touch ${markers.local}`,
        `  KnownHostsCommand /bin/sh -c 'touch ${markers.known}'`,
        "",
      ].join("\n");
      const d = deployUnder(config, buildClosure({ name: `config-${counter}` }), {
        SSH_AUTH_SOCK: agentSock,
        DEPLOY_TEST_PAUSE_AFTER: "begin",
        DEPLOY_TEST_PAUSE_FILE: pause,
      });
      expect(await waitForAsync(() => fs.existsSync(pause), 60_000)).toBe(true);
      // The shim's session on the target (bash -c <shim> blog-deploy-shim serve, in the target's
      // mount namespace): an agent forwarded to it would show as SSH_AUTH_SOCK, X11 as DISPLAY.
      const env = onTarget(
        target,
        [
          "ns=$(readlink /proc/self/ns/mnt)",
          "for p in /proc/[0-9]*; do",
          '  [ "$(readlink $p/ns/mnt 2>/dev/null)" = "$ns" ] || continue',
          "  [ \"$(tr '\\0' '\\n' <$p/cmdline 2>/dev/null | tail -n 2 | head -n 1)\" = blog-deploy-shim ] || continue",
          "  tr '\\0' '\\n' <$p/environ",
          "done",
        ].join("\n"),
      );
      fs.rmSync(pause, { force: true });
      const r = await d.done;

      expect(env).toContain("SSH_CONNECTION="); // it read the session's environment
      expect(env).not.toContain("SSH_AUTH_SOCK=");
      expect(env).not.toContain("DISPLAY=");
      expect(r.stderr).toContain("Deployed:");
      expect(r.status).toBe(0);
      expect(fs.existsSync(markers.local)).toBe(false);
      expect(fs.existsSync(markers.known)).toBe(false);
    } finally {
      if (agentPid) process.kill(agentPid, "SIGTERM");
      fs.rmSync(pause, { force: true });
    }
  });

  test("SSH_PROXY_JUMP must be a jump host (it goes into NIX_SSHOPTS, split on whitespace)", () => {
    const r = deploy(buildClosure({ name: `jump-${++counter}` }), { SSH_PROXY_JUMP: "bastion -oProxyCommand=x" });

    expect(r.stderr).toContain("SSH_PROXY_JUMP='bastion -oProxyCommand=x' is not valid; expected a jump host");
    expect(r.status).toBe(1);
  });
});

describe("the pinned host key is one line of a type the deploy and the stack config both accept", () => {
  const keyOf = (type: string): string => {
    const file = path.join(work, `key-${type}-${++counter}`);
    run("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", `a ${type} key`, "-f", file]);
    return fs.readFileSync(`${file}.pub`, "utf8").trim();
  };
  // Input only: an unreachable port, one attempt; a key that passes reaches the connection.
  const tryKey = (hostKey: string) =>
    deploy(buildClosure({ name: "hostkey-check" }), { HOST_KEY: hostKey, TARGET_PORT: "1", CONNECT_ATTEMPTS: "1", CONNECT_TIMEOUT: "2" });

  test.each(["ed25519", "ecdsa", "rsa"])("an %s key is accepted (the connection is tried)", (type) => {
    const r = tryKey(keyOf(type));

    expect(r.stderr).not.toContain("HOST_KEY=");
    expect(r.stderr).toContain("connect: timed out");
    expect(r.status).toBe(2);
  });

  test("a second line is refused (it would be a second known_hosts entry), and the message shows it as text", () => {
    const r = tryKey(`${keyOf("ed25519")}\nblog-target ${keyOf("ed25519")}`);

    expect(r.stderr).toMatch(/HOST_KEY='ssh-ed25519 \S+ a ed25519 key\?blog-target ssh-ed25519 .*' is not valid; expected one public key line/);
    expect(r.status).toBe(1);
  });

  test.each([
    ["a security-key type, which no host presents", "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIA=="],
    ["a type whose base64 holds another type's key", (k: () => string) => `ecdsa-sha2-nistp256 ${k().split(" ")[1]}`],
    ["an escape sequence in the comment", (k: () => string) => `${k()} \u001b[2J`],
  ])("%s is refused", (_what, value) => {
    const line = typeof value === "string" ? value : value(() => keyOf("ed25519"));
    const r = tryKey(line);

    expect(r.stderr).toMatch(/HOST_KEY='.*' is not valid/);
    expect(r.stderr).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    expect(r.status).toBe(1);
  });
});

describe("HIDE_ADDRESSES=1 (behind Cloudflare's proxy): the origin's addresses stay out of the output", () => {
  let dual: Target | undefined;
  afterAll(() => stopTarget(dual));

  test("a deploy to a dual-stack host names its addresses only as placeholders, the tools' messages included", () => {
    dual = startTarget({ netns: true });
    const env = { PUBLISHED_ADDRESSES: `${dual.addr4} ${dual.addr6}`, HEALTH_URL: "http://blog.test/health.txt", HIDE_ADDRESSES: "1" };
    const ok = runScript("deploy.sh", scriptEnv(dual, { SYSTEM_CLOSURE: buildClosure({ name: `hidden-${++counter}` }), ...env }));
    // A failure: ssh's own message names the address it could not reach.
    const failed = runScript(
      "deploy.sh",
      scriptEnv(dual, { SYSTEM_CLOSURE: buildClosure({ name: `hidden-${++counter}` }), ...env, TARGET_PORT: "1", CONNECT_ATTEMPTS: "1", CONNECT_TIMEOUT: "3" }),
    );

    expect(ok.stderr).toContain("Deployed:");
    expect(ok.status).toBe(0);
    expect(ok.stderr).toContain("through [origin IPv4] [origin IPv6]");
    expect(failed.status).toBe(2);
    expect(failed.stderr).toMatch(/connect: timed out: root@\[origin IPv4\] port 1 .*last error: .*\[origin IPv4\]/);
    for (const r of [ok, failed]) {
      const output = r.stdout + r.stderr;
      expect(output).not.toContain(dual.addr4);
      expect(output).not.toContain(dual.addr6);
    }
  });

  test("a value other than 0 or 1 is bad input", () => {
    const r = deploy(buildClosure({ name: "hostkey-check" }), { HIDE_ADDRESSES: "yes" });

    expect(r.stderr).toContain("HIDE_ADDRESSES='yes' is not valid; expected 1");
    expect(r.status).toBe(1);
  });
});
