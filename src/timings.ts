import * as fs from "fs";

/**
 * Where the program's own time goes, for `pulumi preview` and `pulumi up` (tests/e2e/cost.test.ts):
 * with BLOG_TIMINGS=<file> in the environment, each mark appends "<name> <milliseconds>" to that
 * file; without it, nothing happens. Names and durations only: never a value of the stack.
 */
export function timing(name: string, ms: number): void {
    const file = process.env.BLOG_TIMINGS;
    if (!file) return;
    try {
        fs.appendFileSync(file, `${name} ${Math.round(ms)}\n`);
    } catch {
        // A timing that cannot be written changes nothing.
    }
}

/** Runs `work` and records its duration under `name`. */
export function timed<T>(name: string, work: () => T): T {
    const start = performance.now();
    try {
        return work();
    } finally {
        timing(name, performance.now() - start);
    }
}
