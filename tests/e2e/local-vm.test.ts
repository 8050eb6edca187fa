// docs/operations.md, "Try it in a local VM": the stack commands that deploy to the VM, read from
// the doc's marked block and run as written with the real CLI, against a test machine in place of
// the VM (its address and SSH port in place of 127.0.0.1 and 2222; the VM itself needs nixpkgs and
// KVM, which this machine has not). No Hetzner or Cloudflare token is set at all.
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { DOMAIN, E2eStack, keyLine, repoRoot } from "./harness";
import { markedCommands } from "./markedCommands";

jest.setTimeout(900_000);

const s = new E2eStack("localvm");
let machine: Record<string, string>;
let agentPid: number | undefined;

beforeAll(async () => {
    await s.init({}, {}, { providers: false, host: { platform: "generic" } });
    // The flake's blog-vm: the same host facts, under the name the doc's stack deploys.
    s.setConfiguration("blog-vm", { ...s.configuration("blog") });
    machine = s.startMachine();
}, 600_000);

afterAll(() => {
    if (agentPid !== undefined) spawnSync("kill", [String(agentPid)]);
    s.cleanup();
}, 120_000);

test("the doc's stack for the local VM (host existing, dns none, sshPort, blog-vm) deploys and the site answers", () => {
    const doc = fs.readFileSync(path.join(repoRoot, "docs/operations.md"), "utf8");
    const commands = markedCommands(doc, "local-vm");
    expect(commands).toEqual(
        expect.arrayContaining([
            "pulumi config set host existing",
            "pulumi config set dns none",
            "pulumi config set nixosConfiguration blog-vm",
            "pulumi up",
        ]),
    );
    // The deploy logs in with the ssh-agent's key, as the doc says (the admin key of the host file).
    const agentSock = path.join(s.dir, "agent.sock");
    const agentOut = execFileSync("ssh-agent", ["-s", "-a", agentSock], { encoding: "utf8" });
    agentPid = Number(/SSH_AGENT_PID=(\d+)/.exec(agentOut)![1]);
    execFileSync("ssh-add", ["-q", path.join(s.dir, "admin")], { env: { ...process.env, SSH_AUTH_SOCK: agentSock } });
    const env: Record<string, string> = { ...s.cliEnvironment(), SSH_AUTH_SOCK: agentSock };
    const addr = machine.TARGET_ADDR4;
    const outputs: string[] = [];
    for (const line of commands) {
        const run = line
            .replace(/127\.0\.0\.1/g, addr)
            .replace(/-p 2222\b/g, "-p 22")
            .replace(/sshPort 2222$/, "sshPort 22")
            .replace(/<your domain>/g, DOMAIN)
            .replace(/^pulumi up$/, "pulumi up --yes")
            // The test CA signed the test machine's certificate; -k stays as written.
            .replace(/^curl -k /, "curl -k --fail ");
        const r = spawnSync("bash", ["--norc", "--noprofile", "-euo", "pipefail", "-c", run], {
            cwd: s.projectDir,
            env,
            input: "",
            encoding: "utf8",
            timeout: 600_000,
            maxBuffer: 64 * 1024 * 1024,
        });
        if (r.status !== 0) throw new Error(`\`${line}\` (ran \`${run}\`) exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
        outputs.push(r.stdout);
    }
    expect(s.onTarget(machine.TARGET_DIR, "readlink -e /run/current-system")).toBe(s.toplevel("blog-vm"));
    expect(s.installs()).toEqual([]);
    expect(keyLine(s.presentedHostKey(machine.TARGET_DIR))).toBe(keyLine(machine.HOST_KEY));
});
