// The fake clouds' records: JSON files in $BLOG_E2E_CLOUD_DIR that tests read. The engine runs
// resource operations in parallel (and one plugin process per provider instance), so every
// change takes a lock (an atomic mkdir) and writes a temporary file that is renamed into place.
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";

export function cloudDir(): string {
    const dir = process.env.BLOG_E2E_CLOUD_DIR;
    if (!dir) throw new Error("BLOG_E2E_CLOUD_DIR is not set: the stand-in providers keep their cloud there");
    fs.mkdirSync(dir, { recursive: true });
    return dir;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How long a lock may be held before it is taken as left behind by a killed plugin. */
const STALE_LOCK_MS = 120_000;

async function lock(file: string): Promise<() => void> {
    const dir = `${file}.lock`;
    for (let waited = 0; ; waited += 10) {
        try {
            fs.mkdirSync(dir);
            return () => fs.rmSync(dir, { recursive: true, force: true });
        } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
            try {
                if (Date.now() - fs.statSync(dir).mtimeMs > STALE_LOCK_MS) fs.rmSync(dir, { recursive: true, force: true });
            } catch {
                // released meanwhile
            }
            if (waited > 2 * STALE_LOCK_MS) throw new Error(`could not lock ${file}`);
            await sleep(10);
        }
    }
}

/**
 * Runs `fn` while holding the lock on `file` (the lock the Store of that file takes too), so that
 * plugins, and tests, that make the same thing at once make it once.
 */
export async function withLock<R>(file: string, fn: () => R | Promise<R>): Promise<R> {
    const release = await lock(file);
    try {
        return await fn();
    } finally {
        release();
    }
}

function readJson<T>(file: string, empty: () => T): T {
    return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as T) : empty();
}

/** One JSON document, changed under a lock. */
export class Store<T> {
    constructor(
        private readonly name: string,
        private readonly empty: () => T,
    ) {}

    get file(): string {
        return path.join(cloudDir(), this.name);
    }

    read(): T {
        return readJson(this.file, this.empty);
    }

    /** Runs `fn` on the current document and saves what it leaves (keep `fn` short: others wait). */
    async update<R>(fn: (doc: T) => R): Promise<R> {
        const file = this.file;
        const release = await lock(file);
        try {
            const doc = readJson(file, this.empty);
            const result = fn(doc);
            const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
            fs.writeFileSync(tmp, `${JSON.stringify(doc, null, 2)}\n`);
            fs.renameSync(tmp, file);
            return result;
        } finally {
            release();
        }
    }
}
