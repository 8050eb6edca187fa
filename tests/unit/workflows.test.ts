// The GitHub Actions workflows: valid against the workflow JSON schema
// (SchemaStore's, bundled in @action-validator/core; nothing is downloaded),
// and the properties the project relies on: least privilege, secrets only
// where needed, pinned actions, the fork case, comments edited in place, and
// deploys that never overlap.
import { validateWorkflow } from "@action-validator/core";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";

const repo = path.resolve(__dirname, "../..");
const dir = path.join(repo, ".github/workflows");

type Step = { name?: string; id?: string; uses?: string; run?: string; if?: string; with?: Record<string, unknown>; env?: Record<string, unknown> };
type Job = {
  name?: string;
  "runs-on": string;
  if?: string;
  permissions?: Record<string, string> | string;
  environment?: string | { name: string };
  env?: Record<string, unknown>;
  steps: Step[];
};
type Workflow = {
  on: Record<string, unknown>;
  permissions?: Record<string, string> | string;
  env?: Record<string, unknown>;
  concurrency?: { group: string; "cancel-in-progress": boolean };
  jobs: Record<string, Job>;
};

const files = ["ci.yml", "preview.yml", "deploy.yml", "update.yml", "status.yml"];
const text: Record<string, string> = {};
const workflows: Record<string, Workflow> = {};
for (const file of files) {
  text[file] = fs.readFileSync(path.join(dir, file), "utf8");
  workflows[file] = parse(text[file]) as Workflow;
}
const ci = workflows["ci.yml"];
const preview = workflows["preview.yml"];
const deploy = workflows["deploy.yml"];
const update = workflows["update.yml"];
const status = workflows["status.yml"];

const allSteps = (wf: Workflow): Step[] => Object.values(wf.jobs).flatMap((job) => job.steps);
const stepUsing = (job: Job, action: string): Step[] => job.steps.filter((s) => s.uses?.startsWith(`${action}@`));
const previewJob = preview.jobs.preview;
const forkJob = preview.jobs.fork;
const deployJob = deploy.jobs.deploy;
const updateJob = update.jobs.update;
const statusJob = status.jobs.status;

/** Every string in a YAML tree with its path, e.g. ["jobs.x.steps.2.env.TOKEN", "${{ secrets.TOKEN }}"]. */
function strings(node: unknown, at = ""): [string, string][] {
  if (typeof node === "string") return [[at, node]];
  if (Array.isArray(node)) return node.flatMap((v, i) => strings(v, `${at}.${i}`));
  if (node && typeof node === "object")
    return Object.entries(node).flatMap(([k, v]) => strings(v, at ? `${at}.${k}` : k));
  return [];
}

test("the five workflows exist, and there are no others", () => {
  expect(fs.readdirSync(dir).sort()).toEqual([...files].sort());
});

describe.each(files)("%s", (file) => {
  const wf = workflows[file];

  test("is valid against the GitHub workflow JSON schema", () => {
    expect(validateWorkflow(text[file]).errors).toEqual([]);
  });

  test("grants only `contents: read` at the top", () => {
    expect(wf.permissions).toEqual({ contents: "read" });
  });

  test("never puts `${{ … }}` into a run: script (secrets or otherwise; values come through env)", () => {
    for (const step of allSteps(wf)) {
      if (step.run !== undefined) expect({ step: step.name, run: step.run }).not.toEqual({ step: step.name, run: expect.stringContaining("${{") });
    }
  });

  test("reads secrets only in the env: or with: of the step that needs them", () => {
    const places = strings(wf)
      .filter(([, value]) => /\bsecrets\./.test(value))
      .map(([where]) => where);
    for (const where of places) expect(where).toMatch(/^jobs\.[^.]+\.steps\.\d+\.(env|with)\.[^.]+$/);
  });

  test("pins every action to a full commit SHA with its release tag as a comment", () => {
    const uses = text[file].split("\n").filter((line) => /^\s*(-\s+)?uses:/.test(line));
    expect(uses.length).toBeGreaterThan(0);
    for (const line of uses) {
      expect(line).toMatch(/uses: [\w.-]+\/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$/);
    }
  });

  test("runs on a fixed runner image, not -latest", () => {
    for (const job of Object.values(wf.jobs)) expect(job["runs-on"]).toBe("ubuntu-24.04");
  });
});

test("each action is pinned to the same commit in every workflow", () => {
  const pins = new Map<string, Set<string>>();
  for (const file of files)
    for (const step of allSteps(workflows[file]))
      if (step.uses) {
        const [action, ref] = step.uses.split("@");
        pins.set(action, (pins.get(action) ?? new Set()).add(ref));
      }
  for (const [action, refs] of pins) expect({ action, refs: [...refs] }).toEqual({ action, refs: [expect.any(String)] });
});

describe("ci.yml", () => {
  test("runs on every push and pull request", () => {
    expect(Object.keys(ci.on).sort()).toEqual(["pull_request", "push"]);
  });

  test("takes Node from package.json engines, installs with npm ci, and runs the project's test entry point", () => {
    const test = ci.jobs.test;
    expect(stepUsing(test, "actions/setup-node")[0].with).toMatchObject({ "node-version-file": "package.json" });
    const runs = test.steps.map((s) => s.run ?? "");
    expect(runs).toContain("npm ci");
    expect(runs.findIndex((r) => r === "npm ci")).toBeLessThan(runs.findIndex((r) => r.includes("bash .ci/run")));
    expect(runs.find((r) => r.includes(".ci/run"))).toMatch(/^sudo .*bash \.ci\/run$/);
  });

  test("checks the flake with a maintained Nix installer, KVM on, and never silently rewrites the lock file", () => {
    const check = ci.jobs["flake-check"];
    const nix = stepUsing(check, "cachix/install-nix-action");
    expect(nix).toHaveLength(1);
    expect(nix[0].with).toMatchObject({ enable_kvm: true });
    expect(String(nix[0].with?.extra_nix_config)).toContain("kvm");
    const runs = check.steps.map((s) => s.run ?? "");
    const lock = runs.findIndex((r) => r.includes("nix flake lock"));
    const flakeCheck = runs.findIndex((r) => /nix flake check .*--no-update-lock-file.* \.\/nix$/.test(r));
    expect(flakeCheck).toBeGreaterThan(-1);
    expect(lock).toBeGreaterThan(-1);
    expect(lock).toBeLessThan(flakeCheck);
    // Locks only when nix/flake.lock is missing, and says so.
    expect(runs[lock]).toMatch(/if \[ -f nix\/flake\.lock \]; then[\s\S]*exit 0[\s\S]*::warning/);
  });

  test("uses no secrets and no write permission", () => {
    expect(text["ci.yml"]).not.toMatch(/secrets\./);
    expect(text["ci.yml"]).not.toMatch(/: write/);
  });
});

describe("preview.yml", () => {
  const forkCondition = "github.event.pull_request.head.repo.full_name != github.repository";
  const sameRepoCondition = "github.event.pull_request.head.repo.full_name == github.repository";

  test("runs on pull requests only", () => {
    expect(Object.keys(preview.on)).toEqual(["pull_request"]);
  });

  test("gives pull-requests: write to the preview job only", () => {
    expect(previewJob.permissions).toEqual({ contents: "read", "pull-requests": "write" });
    expect(forkJob.permissions).toBeUndefined();
  });

  test("previews only pull requests from this repository", () => {
    expect(previewJob.if).toBe(sameRepoCondition);
  });

  test("says in the job summary why a pull request from a fork gets no preview", () => {
    expect(forkJob.if).toBe(forkCondition);
    const script = forkJob.steps.map((s) => s.run ?? "").join("\n");
    expect(script).toContain('>> "$GITHUB_STEP_SUMMARY"');
    expect(script).toMatch(/fork/);
    expect(script).toMatch(/secrets/);
    expect(strings(forkJob).some(([, v]) => v.includes("secrets."))).toBe(false);
  });

  test("runs pulumi preview of the configured stack and edits its PR comment in place", () => {
    // The step that runs a command (the first only installs the CLI for the mask step).
    const step = stepUsing(previewJob, "pulumi/actions").find((s) => s.with?.command)!;
    expect(step.with).toMatchObject({
      command: "preview",
      "stack-name": "${{ vars.PULUMI_STACK }}",
      "cloud-url": "${{ vars.PULUMI_BACKEND_URL }}",
      "comment-on-pr": true,
      "edit-pr-comment": true,
      diff: true,
    });
    expect(Object.keys(step.env ?? {}).sort()).toEqual(
      ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CLOUDFLARE_API_TOKEN", "HCLOUD_TOKEN", "PULUMI_CONFIG_PASSPHRASE"].sort(),
    );
  });

  test("posts the closure diff as a second comment, edited in place under a fixed header", () => {
    const closure = previewJob.steps.find((s) => s.id === "closure");
    expect(closure?.run).toContain('args=(--stack "$PULUMI_STACK" --stack-output systemClosure --flake-attr "$flake$toplevel")');
    expect(closure?.run).toContain('bash scripts/closure-diff.sh "${args[@]}"');
    // The system of the stack's own configuration, not a fixed one.
    expect(closure?.env?.FLAKE_ATTR).toBeUndefined();
    expect(closure?.run).toContain('setting nixosConfiguration');
    // The deployed closure is rebuilt from the base commit, never fetched from the server.
    expect(closure?.env?.BASE_SHA).toBe("${{ github.event.pull_request.base.sha }}");
    expect(closure?.run).toContain('args+=(--base-flake-attr "$base_flake$toplevel")');
    expect(closure?.run).not.toMatch(/--from|ssh-ng:|NIX_SSHOPTS|StrictHostKeyChecking/);
    expect(stepUsing(previewJob, "actions/checkout")[0].with).toMatchObject({ "fetch-depth": 0, "persist-credentials": false });
    const sticky = stepUsing(previewJob, "marocchino/sticky-pull-request-comment");
    expect(sticky).toHaveLength(1);
    expect(sticky[0].with).toEqual({ header: "nixos-closure-diff", path: "${{ steps.closure.outputs.comment }}" });
    expect(previewJob.steps.indexOf(sticky[0])).toBeGreaterThan(previewJob.steps.indexOf(closure!));
  });

  test("never cancels a running preview (a killed pulumi run can leave the stack locked)", () => {
    expect(preview.concurrency?.["cancel-in-progress"]).toBe(false);
  });
});

describe("least privilege for pull requests (README, CI/CD)", () => {
  const secretsOf = (job: Job) =>
    new Set(strings(job).flatMap(([, v]) => [...v.matchAll(/\bsecrets\.([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1])));

  test("no workflow runs on pull_request_target or workflow_run (they hand a pull request's code the repository's secrets)", () => {
    for (const file of files) {
      expect(Object.keys(workflows[file].on)).not.toContain("pull_request_target");
      expect(Object.keys(workflows[file].on)).not.toContain("workflow_run");
    }
  });

  test("every job that reads a secret runs in an environment: no repository secret reaches a branch's own workflow", () => {
    for (const file of files)
      for (const [name, job] of Object.entries(workflows[file].jobs))
        if (secretsOf(job).size > 0) expect({ file, name, environment: job.environment }).toEqual({ file, name, environment: expect.any(String) });
  });

  test("previews run in the `preview` environment (reviewers approve each run), deploys in `production`", () => {
    expect(previewJob.environment).toBe("preview");
    expect(deployJob.environment).toBe("production");
  });

  test("a preview holds no SSH key and never logs in to the server", () => {
    expect(text["preview.yml"]).not.toMatch(/sshPrivateKey|DEPLOY_SSH_KEY|ssh-add|ssh-agent|ssh-ng:|NIX_SSHOPTS|id_ed25519/);
    expect([...secretsOf(previewJob)].sort()).toEqual(
      ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CLOUDFLARE_API_TOKEN", "HCLOUD_TOKEN", "PULUMI_CONFIG_PASSPHRASE"].sort(),
    );
  });

  test("the deploy key reaches only the deploy job, only the step that loads it into an ssh-agent (never a file), and the agent stops", () => {
    const holders = deployJob.steps.filter((s) => strings(s).some(([, v]) => v.includes("secrets.DEPLOY_SSH_KEY")));
    expect(holders.map((s) => s.name)).toEqual(["Load the deploy key into an ssh-agent"]);
    expect(Object.keys(holders[0].env ?? {})).toEqual(["DEPLOY_SSH_KEY"]);
    expect(holders[0].run).toContain('printf \'%s\\n\' "$DEPLOY_SSH_KEY" | ssh-add -q -t 5400 -');
    expect(holders[0].run).toContain('echo "SSH_AUTH_SOCK=$SSH_AUTH_SOCK"');
    const up = deployJob.steps.findIndex((s) => s.id === "up");
    expect(deployJob.steps.indexOf(holders[0])).toBeLessThan(up);
    const stop = deployJob.steps.find((s) => s.name === "Stop the ssh-agent")!;
    expect(stop.if).toBe("${{ always() }}");
    expect(deployJob.steps.indexOf(stop)).toBeGreaterThan(up);
  });

  test.each([
    ["preview.yml", "pulumi preview"],
    ["deploy.yml", "pulumi up"],
  ])("%s masks a proxied stack's addresses before %s runs", (file, stepName) => {
    const job = Object.values(workflows[file].jobs).find((j) => j.steps.some((s) => s.name === stepName))!;
    const mask = job.steps.findIndex((s) => s.name === "Mask the origin's addresses (proxied stacks)");
    expect(mask).toBeGreaterThan(-1);
    expect(mask).toBeLessThan(job.steps.findIndex((s) => s.name === stepName));
  });

  test("the mask step masks the stack's ipv4 and ipv6 outputs of a proxied stack, only address-shaped values, and nothing otherwise", () => {
    const mask = deployJob.steps.find((s) => s.name === "Mask the origin's addresses (proxied stacks)")!.run!;
    const fake = (proxied: string, outputs: string) => (dir: string) => {
      fs.writeFileSync(
        path.join(dir, "pulumi"),
        `#!/bin/sh\ncase "$1 $2 $3" in "config get proxied") echo ${proxied} ;; "stack output --stack") cat <<'EOF'\n${outputs}\nEOF\n ;; esac\n`,
        { mode: 0o755 },
      );
    };
    const outputs = JSON.stringify({ ipv4: "198.51.100.7", ipv6: "2001:db8::7", url: "https://blog.example.org/" });
    const masked = runScript(mask, { PULUMI_STACK: "production" }, fake("true", outputs));
    expect(masked.code).toBe(0);
    expect(masked.stdout).toBe("::add-mask::198.51.100.7\n::add-mask::2001:db8::7\n");
    const odd = runScript(mask, { PULUMI_STACK: "production" }, fake("true", JSON.stringify({ ipv4: "x\n::set-output name=a::b", ipv6: null })));
    expect(odd.stdout).toBe("");
    const plain = runScript(mask, { PULUMI_STACK: "production" }, fake("false", outputs));
    expect(plain.code).toBe(0);
    expect(plain.stdout).toBe("");
  });
});

describe("deploy.yml", () => {
  test("runs on push to main and by hand", () => {
    expect(deploy.on).toEqual({ push: { branches: ["main"] }, workflow_dispatch: null });
    expect(deployJob.if).toBe("github.ref == 'refs/heads/main'");
  });

  test("deploys one at a time and never cancels a running deploy", () => {
    expect(deploy.concurrency).toEqual({ group: "deploy-production", "cancel-in-progress": false });
  });

  test("runs in the production environment, which can require approval", () => {
    expect(deployJob.environment).toBe("production");
  });

  test("runs pulumi up of the configured stack", () => {
    const step = stepUsing(deployJob, "pulumi/actions").find((s) => s.with?.command)!;
    expect(step.with).toMatchObject({
      command: "up",
      "stack-name": "${{ vars.PULUMI_STACK }}",
      "cloud-url": "${{ vars.PULUMI_BACKEND_URL }}",
    });
  });

  test("refuses to deploy without a committed nix/flake.lock, before pulumi up", () => {
    const guard = deployJob.steps.findIndex((s) => /if \[ ! -f nix\/flake\.lock \]; then[\s\S]*::error[\s\S]*exit 1/.test(s.run ?? ""));
    const up = deployJob.steps.findIndex((s) => s.uses?.startsWith("pulumi/actions@"));
    expect(guard).toBeGreaterThan(-1);
    expect(guard).toBeLessThan(up);
    expect(text["deploy.yml"]).not.toContain("nix flake lock ./nix\n");
  });

  test("grants no write permission", () => {
    expect(deployJob.permissions).toBeUndefined();
    expect(text["deploy.yml"]).not.toMatch(/: write/);
  });
});

test("the Pulumi CLI the workflows install is @pulumi/pulumi's version in package-lock.json, read in one place", () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8"));
  const locked = JSON.parse(fs.readFileSync(path.join(repo, "package-lock.json"), "utf8")).packages["node_modules/@pulumi/pulumi"].version;
  expect(pkg.dependencies["@pulumi/pulumi"]).toBe(locked);
  for (const job of [previewJob, deployJob, statusJob]) {
    const versionStep = job.steps.findIndex((s) => s.id === "pulumi-version");
    const actions = job.steps.findIndex((s) => s.uses?.startsWith("pulumi/actions@"));
    expect(versionStep).toBeGreaterThan(-1);
    expect(versionStep).toBeLessThan(actions);
    expect(job.steps[actions].with?.["pulumi-version"]).toBe("${{ steps.pulumi-version.outputs.version }}");
    // The step's script, run on the project's own package-lock.json, gives that version.
    const out = runScript(job.steps[versionStep].run!, {}, (d) => fs.copyFileSync(path.join(repo, "package-lock.json"), path.join(d, "package-lock.json")));
    expect(out.code).toBe(0);
    expect(out.output).toBe(`version=${locked}\n`);
    // ...and stops on a lock file without it.
    const none = runScript(job.steps[versionStep].run!, {}, (d) => fs.writeFileSync(path.join(d, "package-lock.json"), '{"packages": {}}'));
    expect(none.code).toBe(1);
    expect(none.stdout).toContain("::error file=package-lock.json::package-lock.json pins no version of @pulumi/pulumi");
  }
});

test("the validator rejects a broken workflow (so the schema test can fail)", () => {
  const broken = text["deploy.yml"].replace("runs-on: ubuntu-24.04", "runs-onn: ubuntu-24.04");
  expect(validateWorkflow(broken).errors.length).toBeGreaterThan(0);
});

/** Runs a step's script as GitHub does (bash -e -o pipefail) in a scratch directory. */
function runScript(script: string, env: Record<string, string>, setup: (dir: string) => void = () => {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "workflow-step-"));
  try {
    setup(dir);
    const summary = path.join(dir, "summary.md");
    const output = path.join(dir, "output");
    const result = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", script], {
      cwd: dir,
      encoding: "utf8",
      timeout: 10_000,
      env: { PATH: `${dir}:${process.env.PATH}`, GITHUB_STEP_SUMMARY: summary, GITHUB_OUTPUT: output, RUNNER_TEMP: dir, ...env },
    });
    const read = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, "utf8") : "");
    return { code: result.status, stdout: result.stdout, summary: read(summary), output: read(output), pullRequest: read(path.join(dir, "pull-request.md")) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test("the fork job's step writes why there is no preview into the job summary", () => {
  const { code, summary } = runScript(forkJob.steps[0].run!, { HEAD_REPOSITORY: "someone/blog" });
  expect(code).toBe(0);
  expect(summary).toContain("### No Pulumi preview and no closure diff for this pull request");
  expect(summary).toContain("comes from the fork `someone/blog`");
  expect(summary).toContain("does not give\nworkflows of pull requests from forks the repository's secrets");
});

test("deploy's lock-file guard stops without nix/flake.lock and passes with it", () => {
  const guard = deployJob.steps.find((s) => s.name === "Require a committed nix/flake.lock")!.run!;
  const without = runScript(guard, {});
  expect(without.code).toBe(1);
  expect(without.stdout).toMatch(/^::error file=nix\/flake\.nix::nix\/flake\.lock is not committed/);
  const withLock = runScript(guard, {}, (dir) => {
    fs.mkdirSync(path.join(dir, "nix"));
    fs.writeFileSync(path.join(dir, "nix/flake.lock"), "{}");
  });
  expect(withLock.code).toBe(0);
});

describe("update.yml", () => {
  test("runs every week and by hand", () => {
    expect(Object.keys(update.on).sort()).toEqual(["schedule", "workflow_dispatch"]);
    expect(update.on.schedule).toEqual([{ cron: expect.stringMatching(/^\d+ \d+ \* \* [0-6]$/) }]);
    expect(update.concurrency).toEqual({ group: "update-flake-inputs", "cancel-in-progress": false });
  });

  test("gives contents: write and pull-requests: write to its one job, nothing else", () => {
    expect(Object.keys(update.jobs)).toEqual(["update"]);
    expect(updateJob.permissions).toEqual({ contents: "write", "pull-requests": "write" });
  });

  test("moves the inputs with scripts/flake-update.sh, with Nix installed, the pull request's text in RUNNER_TEMP", () => {
    const nix = updateJob.steps.findIndex((s) => s.uses?.startsWith("cachix/install-nix-action@"));
    const run = updateJob.steps.findIndex((s) => s.id === "update");
    expect(nix).toBeGreaterThan(-1);
    expect(run).toBeGreaterThan(nix);
    expect(updateJob.steps[run].run).toContain('bash scripts/flake-update.sh --flake nix --body "$RUNNER_TEMP/pull-request.md"');
  });

  test("opens or refreshes one pull request from one branch, with the flake's files only", () => {
    const [pr] = stepUsing(updateJob, "peter-evans/create-pull-request");
    expect(pr.with).toMatchObject({
      branch: "update/flake-inputs",
      "delete-branch": true,
      "body-path": "${{ runner.temp }}/pull-request.md",
      token: "${{ steps.app-token.outputs.token || github.token }}",
    });
    expect(String(pr.with?.["add-paths"]).trim().split("\n")).toEqual(["nix/flake.nix", "nix/flake.lock"]);
    expect(updateJob.steps.indexOf(pr)).toBe(updateJob.steps.length - 1);
  });

  test("takes a GitHub App's token when one is configured (its pull requests start CI and the preview), limited to the job's needs", () => {
    const [app] = stepUsing(updateJob, "actions/create-github-app-token");
    expect(app.id).toBe("app-token");
    expect(app.if).toBe("vars.UPDATES_APP_CLIENT_ID != ''");
    expect(app.with).toEqual({
      "client-id": "${{ vars.UPDATES_APP_CLIENT_ID }}",
      "private-key": "${{ secrets.UPDATES_APP_PRIVATE_KEY }}",
      "permission-contents": "write",
      "permission-pull-requests": "write",
    });
    // The app's key is the only secret the workflow reads.
    expect(strings(update).filter(([, v]) => /\bsecrets\./.test(v)).map(([, v]) => v)).toEqual(["${{ secrets.UPDATES_APP_PRIVATE_KEY }}"]);
  });

  test("without the app, the pull request says how to start its checks", () => {
    const note = updateJob.steps.find((s) => s.if === "vars.UPDATES_APP_CLIENT_ID == ''")!;
    const { code, pullRequest } = runScript(note.run!, {});
    expect(code).toBe(0);
    expect(pullRequest).toContain("**close and reopen it** to run CI and the preview");
  });

  test("warns in the run when the NixOS release nears or passed its end of support", () => {
    const warn = updateJob.steps.find((s) => s.if?.includes("steps.update.outputs.end-of-support"))!;
    expect(warn.if).toBe("steps.update.outputs.end-of-support == 'near' || steps.update.outputs.end-of-support == 'past'");
    expect(runScript(warn.run!, {}).stdout).toMatch(/^::warning file=nix\/flake\.nix::/);
  });
});

describe("dependabot.yml", () => {
  const bot = parse(fs.readFileSync(path.join(repo, ".github/dependabot.yml"), "utf8")) as {
    version: number;
    updates: Array<{ "package-ecosystem": string; directory: string; schedule: { interval: string }; groups: Record<string, { patterns: string[] }> }>;
  };

  test("updates npm packages and the pinned actions weekly, grouped", () => {
    expect(bot.version).toBe(2);
    expect(bot.updates.map((u) => [u["package-ecosystem"], u.directory, u.schedule.interval])).toEqual([
      ["npm", "/", "weekly"],
      ["github-actions", "/", "weekly"],
    ]);
    for (const u of bot.updates) expect(Object.keys(u.groups).length).toBeGreaterThan(0);
  });

  test("moves every @pulumi package in one pull request, so the SDK, the providers and the CLI move together", () => {
    const npm = bot.updates.find((u) => u["package-ecosystem"] === "npm")!;
    expect(npm.groups.pulumi.patterns).toEqual(["@pulumi/*"]);
  });

  test("puts every runtime dependency in a group, so none arrives as a pull request of its own", () => {
    const npm = bot.updates.find((u) => u["package-ecosystem"] === "npm")!;
    const pkg = JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8"));
    const grouped = (name: string) =>
      Object.values(npm.groups).some((g) =>
        g.patterns.some((p) => (p.endsWith("*") ? name.startsWith(p.slice(0, -1)) : name === p) && p !== "*"),
      );
    expect(Object.keys(pkg.dependencies).filter((d) => !grouped(d))).toEqual([]);
  });
});

describe("status.yml", () => {
  test("runs daily and by hand, on main only", () => {
    expect(Object.keys(status.on).sort()).toEqual(["schedule", "workflow_dispatch"]);
    expect((status.on.schedule as Array<{ cron: string }>)[0].cron).toMatch(/^\d+ \d+ \* \* \*$/);
    expect(statusJob.if).toBe("github.ref == 'refs/heads/main'");
  });

  test("runs in production with contents: read only", () => {
    expect(statusJob.environment).toBe("production");
    expect(status.permissions).toEqual({ contents: "read" });
    expect(statusJob.permissions).toBeUndefined();
  });

  test("runs npm run status of the configured stack and fails the run on any exit but 0, with the findings in the job summary", () => {
    const step = statusJob.steps.find((s) => s.id === "status")!;
    expect(step.run).toContain('npm run --silent status -- --stack "$PULUMI_STACK"');
    expect(step.run).toContain("GITHUB_STEP_SUMMARY");
    expect(step.run).toMatch(/exit "\$status"\s*$/);
    // The step's script, with a stand-in npm that exits 3, fails with 3 and writes the summary.
    const out = runScript(step.run!, { PULUMI_STACK: "production" }, (d) => {
      fs.writeFileSync(path.join(d, "npm"), "#!/bin/sh\necho 'NEEDS A PERSON units: the unit x.service has failed'\nexit 3\n", { mode: 0o755 });
    });
    expect(out.code).toBe(3);
    expect(out.stdout).toContain("::error::npm run status exited 3");
    expect(out.summary).toContain("NEEDS A PERSON units: the unit x.service has failed");
  });

  test("the deploy key reaches only the step that loads it into an ssh-agent, and the agent stops", () => {
    const holders = statusJob.steps.filter((s) => strings(s).some(([, v]) => v.includes("secrets.DEPLOY_SSH_KEY")));
    expect(holders.map((s) => s.name)).toEqual(["Load the deploy key into an ssh-agent"]);
    expect(Object.keys(holders[0].env ?? {})).toEqual(["DEPLOY_SSH_KEY"]);
    const stop = statusJob.steps.find((s) => s.name === "Stop the ssh-agent")!;
    expect(stop.if).toBe("${{ always() }}");
  });
});
