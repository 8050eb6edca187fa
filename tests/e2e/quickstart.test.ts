// The README's Quick start, as written: its commands are read from README.md's blocks marked
// `<!-- quick-start -->` and run one by one with the real Pulumi CLI, with the e2e suite's
// stand-ins in place of Hetzner and Cloudflare. A change to the Quick start changes what runs
// here; a command this file does not know runs as written.
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { CLOUDFLARE_TOKEN, DOMAIN, E2eStack, HCLOUD_TOKEN, ZONE_ID, repoRoot } from "./harness";
import { markedCommands } from "./markedCommands";

jest.setTimeout(1_800_000);


/**
 * What stands in for a command that needs a real account, a terminal or the network; undefined:
 * the command runs as written (after placeholder substitution).
 */
interface Mapped {
    run?: string;
    stdin?: string;
    skipped?: string;
}

function mapCommand(line: string, dir: string): Mapped {
    if (/^git clone /.test(line)) return { skipped: "the harness copied the project; the commands run in the copy" };
    if (line === "npm ci") return { skipped: "node_modules is the repository's, linked into the copy (no registry here)" };
    if (/^\$EDITOR nix\/hosts\//.test(line)) return { skipped: "the harness wrote the host facts (domain, e-mail, admin key) of the test flake" };
    if (/^git add nix && nix flake lock/.test(line)) return { skipped: "the test flake has no inputs to lock, and the copy is no git repository" };
    // `--local` is file://~, and the CLI takes ~ from the user database, not $HOME (pulumi
    // pkg/backend/diy/backend.go v3.276.0: user.Current().HomeDir): the same local backend, in the
    // test's directory instead of this machine's ~/.pulumi.
    if (line === "pulumi login --local") return { run: `pulumi login "file://${path.join(dir, "state-local")}"` };
    let run = line.replace(/<zone id>/g, ZONE_ID).replace(/\/tmp\/blog_known_hosts/g, path.join(dir, "blog_known_hosts"));
    if (/^pulumi config set --secret hcloud:token$/.test(line)) return { run, stdin: HCLOUD_TOKEN };
    if (/^pulumi config set --secret cloudflare:apiToken$/.test(line)) return { run, stdin: CLOUDFLARE_TOKEN };
    // No terminal: the confirmation the CLI would ask for.
    if (/^pulumi (up|destroy)$/.test(line)) return { run: `${line} --yes` };
    // The test domain is in no DNS: curl reaches the server's address, as the records say.
    if (/^curl /.test(line)) run = run.replace(/^curl /, `curl --resolve "${DOMAIN}:443:$(pulumi stack output ipv4)" `);
    // A login, not a shell: one command on the host.
    if (/^ssh /.test(line)) run = `${run} readlink -e /run/current-system`;
    return { run };
}

const s = new E2eStack("quickstart");
let agentPid: number | undefined;

// The install takes a few seconds here (the stand-in nixos-anywhere, after a pause), and the
// scripts' progress line comes every second: `pulumi up` must show it while the install runs.
const slowInstall = path.join(s.dir, "slow-nixos-anywhere.sh");
fs.writeFileSync(slowInstall, `#!/bin/sh\nsleep 3\nexec ${path.join(repoRoot, "tests/e2e/fake-nixos-anywhere.sh")} "$@"\n`, { mode: 0o755 });

beforeAll(() => s.init({}, {}, { env: { NIXOS_ANYWHERE: slowInstall, BLOG_PROGRESS_INTERVAL: "1" } }), 600_000);

afterAll(() => {
    if (agentPid !== undefined) spawnSync("kill", [String(agentPid)]);
    s.cleanup();
}, 120_000);

test("the README's Quick start, as written, reaches a healthy host and tears it down", () => {
    const readme = fs.readFileSync(path.join(repoRoot, "README.md"), "utf8");
    const commands = markedCommands(readme, "quick-start");
    // The user's path: the npm dependencies before the first pulumi command, then up, check, log in, destroy.
    const first = (re: RegExp) => commands.findIndex((c) => re.test(c));
    expect(first(/^npm ci$/)).toBeGreaterThanOrEqual(0);
    expect(first(/^npm ci$/)).toBeLessThan(first(/^pulumi /));
    for (const re of [/^pulumi up$/, /^curl /, /^ssh /, /^pulumi destroy$/]) expect(first(re)).toBeGreaterThan(0);
    expect(first(/^pulumi up$/)).toBeLessThan(first(/^curl /));
    expect(first(/^curl /)).toBeLessThan(first(/^pulumi destroy$/));

    // The operator's machine: a home of its own (pulumi login --local keeps the state there), and
    // an ssh-agent holding the admin key (the Quick start logs in with the agent's key).
    const home = path.join(s.dir, "home");
    fs.mkdirSync(home);
    fs.mkdirSync(path.join(s.dir, "state-local"));
    const agentSock = path.join(s.dir, "agent.sock");
    const agentOut = execFileSync("ssh-agent", ["-s", "-a", agentSock], { encoding: "utf8" });
    agentPid = Number(/SSH_AGENT_PID=(\d+)/.exec(agentOut)![1]);
    execFileSync("ssh-add", ["-q", path.join(s.dir, "admin")], { env: { ...process.env, SSH_AUTH_SOCK: agentSock } });
    // The test targets' root file system (the stand-in servers' machines) is cached under the real
    // home's cache, not the user's own home of this test.
    const cache = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache");
    const env: Record<string, string> = { ...s.cliEnvironment(), HOME: home, XDG_CACHE_HOME: cache, SSH_AUTH_SOCK: agentSock };
    delete env.PULUMI_BACKEND_URL;

    const outputs: Record<string, string> = {};
    for (const line of commands) {
        const m = mapCommand(line, s.dir);
        if (m.skipped !== undefined) continue;
        const r = spawnSync("bash", ["--norc", "--noprofile", "-euo", "pipefail", "-c", m.run!], {
            cwd: s.projectDir,
            env,
            input: m.stdin ?? "",
            encoding: "utf8",
            timeout: 900_000,
            maxBuffer: 64 * 1024 * 1024,
        });
        if (r.status !== 0) throw new Error(`Quick start: \`${line}\` (ran \`${m.run}\`) exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
        outputs[line] = r.stdout;
        if (/^pulumi up$/.test(line)) {
            // Long work says it is alive, in pulumi up's own output.
            expect(r.stdout + r.stderr).toMatch(/nixos-anywhere: still running, 0m0[1-9]s elapsed/);
            // The host runs the system the stack evaluated, and answers.
            const closure = spawnSync("pulumi", ["stack", "output", "systemClosure"], { cwd: s.projectDir, env, encoding: "utf8" });
            expect(closure.stdout.trim()).toBe(s.toplevel());
            expect(s.targetDirs()).toHaveLength(1);
        }
    }
    const curl = commands.find((c) => /^curl /.test(c))!;
    expect(outputs[curl].length).toBeGreaterThan(0);
    const ssh = commands.find((c) => /^ssh /.test(c))!;
    expect(outputs[ssh].trim()).toBe(s.toplevel());
    // destroy: no server left running, no record.
    expect(s.targetDirs()).toEqual([]);
    expect(JSON.stringify(s.cloud("cloudflare"))).not.toContain(DOMAIN);
});
