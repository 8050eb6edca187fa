import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";

/** Relative to the project directory, where Pulumi runs the invoke. */
export const HOST_STATUS_COMMAND = "bash scripts/host-status.sh";

const STORE_PATH = /^\/nix\/store\/[0123456789abcdfghijklmnpqrsvwxyz]{32}-[0-9A-Za-z+._?=-]+$/;

/** What scripts/host-status.sh reports, the part the preview reads. */
export type HostSystem =
    | { state: "ok"; current?: string; profile?: string; generation?: number; runningGeneration?: number; lastBy?: string; lastTime?: number }
    | { state: "unknown"; reason: string };

const uint = (v: unknown): number | undefined => (typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : undefined);
const storePath = (v: unknown): string | undefined => (typeof v === "string" && STORE_PATH.test(v) ? v : undefined);

/**
 * Reads the one JSON line scripts/host-status.sh prints. The script checked every line the host
 * sent; this checks the script's answer again (its exact fields and forms): anything else is
 * `unknown`.
 */
export function parseHostSystem(stdout: string): HostSystem {
    const line = stdout.trim().split("\n").pop() ?? "";
    let parsed: unknown;
    try {
        parsed = JSON.parse(line);
    } catch {
        return { state: "unknown", reason: "the host status script printed no JSON" };
    }
    if (typeof parsed !== "object" || parsed === null) return { state: "unknown", reason: "the host status script printed no object" };
    const p = parsed as Record<string, unknown>;
    if (p.state === "unknown" && typeof p.reason === "string") return { state: "unknown", reason: p.reason.slice(0, 300) };
    if (p.state !== "ok") return { state: "unknown", reason: "the host status script printed an answer of another form" };
    const last = typeof p.last === "object" && p.last !== null ? (p.last as Record<string, unknown>) : {};
    return {
        state: "ok",
        current: storePath(p.current),
        profile: storePath(p.profile),
        generation: uint(p.generation),
        runningGeneration: uint(p.runningGeneration),
        lastBy: typeof last.by === "string" && /^[A-Za-z0-9._@+-]{1,64}$/.test(last.by) ? last.by : undefined,
        lastTime: uint(last.time),
    };
}

/** The command that makes the engine run the deploy again: a replace of the deploy's command runs its `create`. */
export function redeployCommand(urn: string): string {
    return `pulumi up --replace '${urn}'`;
}

/**
 * What the preview says about the host: a warning when it runs another system than the stack last
 * deployed (a hand rollback, a hand-run switch), with the one command that puts the stack's system
 * back; an info line when the host could not be asked without a key (a pull request's preview
 * holds none); a warning when it could not be asked otherwise.
 */
export function hostSystemMessages(
    status: HostSystem,
    deployed: string,
    planned: string | undefined,
    urn: string,
): { info: string[]; warnings: string[] } {
    if (status.state === "unknown") {
        const reason = `host: whether it runs the stack's system could not be checked: ${status.reason}.`;
        return /no SSH key here/.test(status.reason) ? { info: [reason], warnings: [] } : { info: [], warnings: [reason] };
    }
    const generation = status.runningGeneration !== undefined ? `generation ${status.runningGeneration}` : "a system that is no generation of its profile";
    if (status.current === deployed && status.profile === deployed) {
        return { info: [`host: runs and boots the stack's system (${generation}).`], warnings: [] };
    }
    const what =
        status.current === deployed
            ? `host: runs the stack's system, but boots another (its system profile is ${status.profile ?? "not set"}, generation ${status.generation ?? "?"}): a hand-run \`nixos-rebuild boot\` or a profile set by hand.`
            : `host: runs ${status.current ?? "no system"} (${generation}), not the stack's last deployed system ${deployed}: a hand rollback or a hand-run switch since the last deploy.`;
    const fix =
        planned !== undefined && planned !== deployed
            ? ` This plan deploys ${planned}, which puts the stack's system back.`
            : ` This plan does not change it (the stack's system is unchanged, so the deploy has nothing to do): to put the stack's system back, run \`${redeployCommand(urn)}\`.`;
    return { info: [], warnings: [what + fix] };
}

/** Asks the host what it runs (scripts/host-status.sh, read-only, bounded); never fails. */
export function askHost(environment: Record<string, string>): Promise<HostSystem> {
    return command.local.run({ command: HOST_STATUS_COMMAND, environment, logging: "none" }).then(
        (r) => parseHostSystem(r.stdout),
        (err: Error): HostSystem => ({
            state: "unknown",
            reason: `${HOST_STATUS_COMMAND} could not run (${String(err?.message ?? err).split("\n")[0].slice(0, 200)})`,
        }),
    );
}

export interface HostDriftArgs {
    targetHost: pulumi.Input<string>;
    targetPort: pulumi.Input<number>;
    hostKey: pulumi.Input<string>;
    sshPrivateKey?: pulumi.Input<string>;
    /** The closure this plan deploys. */
    planned: pulumi.Input<string>;
    /** The deploy's command resource: its URN goes into the command the warning prints. */
    deployUrn: pulumi.Input<string>;
}

/**
 * In `pulumi preview` only (and the preview pass of an interactive `pulumi up`), once the stack has
 * deployed: the stack's own last `systemClosure` output (a StackReference to this very stack), and
 * the host's current system beside it. A new stack, one that never deployed, and an update
 * (`pulumi up --yes --skip-preview`) ask nothing of the host.
 */
export function checkHostDrift(args: HostDriftArgs): void {
    if (!pulumi.runtime.isDryRun()) return;
    let organization = "organization"; // a DIY backend's (file://, s3://) name for every stack's
    try {
        organization = pulumi.getOrganization();
    } catch {
        // the SDK's test mode sets none
    }
    const self = new pulumi.StackReference(`${organization}/${pulumi.getProject()}/${pulumi.getStack()}`);
    const deployed = self.getOutput("systemClosure");
    pulumi
        .all([deployed, args.targetHost, args.targetPort, args.hostKey, args.sshPrivateKey, args.planned, args.deployUrn])
        .apply(async ([last, host, port, key, privateKey, planned, urn]) => {
            if (typeof last !== "string" || !STORE_PATH.test(last)) return;
            const environment: Record<string, string> = { TARGET_HOST: host, TARGET_PORT: String(port), HOST_KEY: key };
            if (privateKey !== undefined) environment.SSH_PRIVATE_KEY = privateKey;
            const status = await askHost(environment);
            const messages = hostSystemMessages(status, last, planned, urn);
            messages.info.forEach((m) => pulumi.log.info(m));
            messages.warnings.forEach((m) => pulumi.log.warn(m));
        });
}
