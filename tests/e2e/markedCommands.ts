/**
 * The command lines of every ```sh block that follows a `<!-- <marker> -->` line in a Markdown
 * file, in order (comment lines and blank lines left out): what a doc tells a person to type, for
 * a test that runs it as written.
 */
export function markedCommands(markdown: string, marker: string): string[] {
    const blocks = [...markdown.matchAll(new RegExp(`<!-- ${marker} -->\\n\`\`\`sh\\n([\\s\\S]*?)\\n\`\`\``, "g"))];
    if (blocks.length === 0) throw new Error(`no \`\`\`sh block is marked <!-- ${marker} -->`);
    return blocks
        .flatMap((b) => b[1].split("\n"))
        .map((l) => l.replace(/\s+#\s.*$/, "").trim())
        .filter((l) => l !== "" && !l.startsWith("#"));
}
