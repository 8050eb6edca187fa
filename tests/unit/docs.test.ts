// The documentation against the program: docs/configuration.md lists exactly the keys the program
// reads (src/configKeys.ts), each with its type, default and group, so the two cannot drift; the
// README stays a front door.
import * as fs from "fs";
import * as path from "path";
import { CONFIG_KEYS, GROUPS } from "../../src/configKeys";

const root = path.join(__dirname, "../..");

interface DocRow {
    key: string;
    type: string;
    default: string;
    group: string;
}

/** The rows of every table headed `| Key | Type | Default |`, with the `##` section each is under. */
function documentedKeys(markdown: string): DocRow[] {
    const rows: DocRow[] = [];
    let group = "";
    let inKeyTable = false;
    for (const line of markdown.split("\n")) {
        const heading = /^## (.+)$/.exec(line);
        if (heading) group = heading[1].trim();
        if (/^\| Key \| Type \| Default \|/.test(line)) {
            inKeyTable = true;
            continue;
        }
        if (!line.startsWith("|")) {
            inKeyTable = false;
            continue;
        }
        if (!inKeyTable || /^\|\s*-/.test(line)) continue;
        const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
        const key = /^`([^`]+)`$/.exec(cells[0]);
        if (!key) throw new Error(`docs/configuration.md: a key table row whose first cell is not one \`key\`: ${line}`);
        rows.push({ key: key[1], type: cells[1], default: cells[2], group });
    }
    return rows;
}

describe("docs/configuration.md", () => {
    const doc = fs.readFileSync(path.join(root, "docs/configuration.md"), "utf8");
    const rows = documentedKeys(doc);

    test("lists every key the program reads, once, and no other", () => {
        expect(rows.map((r) => r.key).sort()).toEqual(CONFIG_KEYS.map((k) => k.name).sort());
    });

    test("gives each key its type, default and group as src/configKeys.ts defines them", () => {
        for (const k of CONFIG_KEYS) {
            const row = rows.find((r) => r.key === k.name)!;
            expect([k.name, row.type]).toEqual([k.name, k.secret ? `${k.type}, secret` : k.type]);
            expect([k.name, row.group]).toEqual([k.name, k.group]);
            if (k.default !== undefined) expect([k.name, row.default]).toEqual([k.name, `\`${k.default}\``]);
            else expect([k.name, row.default]).toEqual([k.name, expect.stringMatching(/^(empty|required)/)]);
        }
    });

    test("has one section per group, in the table's order", () => {
        const sections = [...doc.matchAll(/^## (.+)$/gm)].map((m) => m[1]).filter((h) => (GROUPS as readonly string[]).includes(h));
        expect(sections).toEqual([...GROUPS]);
    });

    test("names every former key name with its new one", () => {
        for (const k of CONFIG_KEYS) {
            for (const former of k.formerly ?? []) expect(doc).toContain(`| \`${former}\` | \`${k.name}\` |`);
        }
    });

    test("fails on a key missing from the doc, and on a key the program lacks (the parser sees both)", () => {
        const missing = doc.replace(/^\| `ttl` \|.*\n/m, "");
        expect(documentedKeys(missing).map((r) => r.key)).not.toContain("ttl");
        const extra = doc.replace(/^(\| `ttl` \|.*)$/m, "$1\n| `ttls` | integer | `1` | always | A key the program lacks. |");
        expect(documentedKeys(extra).map((r) => r.key)).toContain("ttls");
    });
});

describe("README.md", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");

    test("is a front door of at most about 1,500 words", () => {
        const words = readme.split(/\s+/).filter(Boolean).length;
        expect(words).toBeLessThanOrEqual(1600);
    });

    test("names the set-up and test commands CI runs (.ci/run)", () => {
        const ci = fs.readFileSync(path.join(root, ".ci/run"), "utf8");
        for (const command of ["bash scripts/setup.sh", "npm test"]) {
            expect(ci).toContain(command);
            expect(readme).toContain(`\`\`\`sh\n${command}\n\`\`\``);
        }
    });

    test("every relative link points at a file that exists", () => {
        const files = ["README.md", ...fs.readdirSync(path.join(root, "docs")).map((f) => `docs/${f}`)];
        for (const file of files) {
            const text = fs.readFileSync(path.join(root, file), "utf8");
            for (const m of text.matchAll(/\]\(([^)#\s:]+)(#[^)\s]*)?\)/g)) {
                const target = path.join(root, path.dirname(file), m[1]);
                expect([file, m[1], fs.existsSync(target)]).toEqual([file, m[1], true]);
            }
        }
    });
});
