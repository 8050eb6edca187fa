// Hetzner Storage Boxes, for the stand-in hcloud provider (hcloud.ts serves these): the resource
// `StorageBoxSubaccount` and the invoke `getStorageBox`, over $BLOG_E2E_CLOUD_DIR/hcloud.json's
// `storage_boxes`. A box is one the user already has: it is seeded from $BLOG_E2E_STORAGE_BOXES
// (`{"<id>": {"name", "location", "dir"}}`), whose `dir` holds a real SFTP server the test started
// with tests/integration/harness/backup-server.sh (sshd on port 23, internal-sftp only, in a
// network namespace of its own). Every sub-account is a login of that server: its password, its
// home directory (created when missing), SSH on or off.
//
// What it models, and where that comes from:
//   hetznercloud/terraform-provider-hcloud v1.66.1 (plugin framework):
//     internal/storageboxsubaccount/resource.go   schema: storage_box_id Required, RequiresReplace;
//                                                 name Optional+Computed (auto-named by the bridge,
//                                                 pulumi-hcloud resources.go SetAutonaming); description
//                                                 default ""; home_directory, password (Sensitive)
//                                                 Required; username, server Computed; access_settings
//                                                 default all false, each attribute default false;
//                                                 labels. Create (retried while the box is `locked`),
//                                                 Update's order (change_home_directory,
//                                                 reset_subaccount_password, update_access_settings,
//                                                 then name/description/labels), Delete (not found is
//                                                 done), Read (gone: removed from state)
//     internal/storageboxsubaccount/model.go      the attributes read back (password never is)
//     internal/storagebox/data_source.go          getStorageBox by id or name (ExactlyOneOf with
//                                                 with_selector), NotFoundDiagnostic("storage box", ...)
//   pulumi/pulumi-hcloud @pulumi/hcloud 1.41.0 storageBoxSubaccount.js: additionalSecretOutputs
//     ["password"].
//   Hetzner's API reference, Storage Boxes: sub-account usernames `<box user>-sub<N>`; the password
//     policy (12 to 128 characters of a-z A-Z ÄÖÜäöüß 0-9 ^°!§$%/()=?+#-.,;:~*@{}_&, with an upper and a
//     lower case letter, a digit and a special character); a home directory without a leading slash.
//   docs.hetzner.com Storage Box "Additional users": deleting a sub-account keeps its directory.
// Deviation: `server` is the SFTP server's address in the test network (198.19.N.2), not
// `<username>.your-storagebox.de`: the test network has no DNS. Not modelled: Samba, WebDAV,
// `reachableExternally` and `readonly` (recorded only), the box's snapshots, `locked` retries.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { resourceFailure } from "./lib/bridge";
import { CheckFailure, Invoke, ResourceType } from "./lib/host";
import { Project, compare, compareLabels, diffOf, exactlyOne, frameworkError, frameworkInvalidField, labelProblem, labelsOf, nameFor, notFound, now, project } from "./lib/hcloud-api";
import { repoRoot } from "./lib/repo";
import { DiffKind, Props, UNKNOWN, bool, isUnknown, num, obj, str } from "./lib/values";

export interface SubaccountRecord {
    id: number;
    name: string;
    description: string;
    username: string;
    home_directory: string;
    server: string;
    access_settings: { reachable_externally: boolean; samba_enabled: boolean; ssh_enabled: boolean; webdav_enabled: boolean; readonly: boolean };
    labels: Record<string, string>;
    created: string;
}

export interface StorageBoxRecord {
    id: number;
    name: string;
    username: string;
    server: string;
    location: string;
    storage_box_type: string;
    labels: Record<string, string>;
    /** The directory of its backup-server.sh SFTP server. */
    dir: string;
    next_sub: number;
    subaccounts: Record<string, SubaccountRecord>;
}

type WithBoxes = Project & { storage_boxes?: Record<string, StorageBoxRecord> };

const ACCESS = ["reachableExternally", "sambaEnabled", "sshEnabled", "webdavEnabled", "readonly"] as const;
const SNAKE: Record<(typeof ACCESS)[number], keyof SubaccountRecord["access_settings"]> = {
    reachableExternally: "reachable_externally",
    sambaEnabled: "samba_enabled",
    sshEnabled: "ssh_enabled",
    webdavEnabled: "webdav_enabled",
    readonly: "readonly",
};

function serverScript(): string {
    return path.join(repoRoot(), "tests/integration/harness/backup-server.sh");
}

function serverAddress(dir: string): string {
    const env = fs.readFileSync(path.join(dir, "server.env"), "utf8");
    const m = /^BACKUP_ADDR=(.+)$/m.exec(env);
    if (!m) throw new Error(`stand-in hcloud: ${dir} holds no running backup server`);
    return m[1];
}

/** The boxes of $BLOG_E2E_STORAGE_BOXES, added to the project once each. */
function seed(doc: WithBoxes): Record<string, StorageBoxRecord> {
    doc.storage_boxes ??= {};
    const seeded = process.env.BLOG_E2E_STORAGE_BOXES ? (JSON.parse(process.env.BLOG_E2E_STORAGE_BOXES) as Record<string, { name: string; location: string; dir: string }>) : {};
    for (const [id, box] of Object.entries(seeded)) {
        if (doc.storage_boxes[id]) continue;
        doc.storage_boxes[id] = {
            id: Number(id),
            name: box.name,
            username: `u${id}`,
            server: serverAddress(box.dir),
            location: box.location,
            storage_box_type: "bx11",
            labels: {},
            dir: box.dir,
            next_sub: 1,
            subaccounts: {},
        };
    }
    return doc.storage_boxes;
}

async function boxes<R>(fn: (b: Record<string, StorageBoxRecord>) => R): Promise<R> {
    return project.update((doc) => fn(seed(doc as WithBoxes)));
}

/** The password policy of the API reference (Storage Boxes password policy); the text is the stand-in's. */
function passwordProblem(password: string): string | undefined {
    const allowed = /^[a-zA-ZÄÖÜäöüß0-9^°!§$%/()=?+#\-.,;:~*@{}_&]{12,128}$/u;
    if (!allowed.test(password) || !/[A-ZÄÖÜ]/u.test(password) || !/[a-zäöüß]/u.test(password) || !/[0-9]/.test(password) || !/[^a-zA-ZÄÖÜäöüß0-9]/u.test(password)) {
        return "password does not meet the password policy";
    }
    return undefined;
}

function homeProblem(home: string): string | undefined {
    if (home.startsWith("/")) return "home directory must not start with a slash";
    if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/?$/.test(home) || home.split("/").includes("..")) return "home directory is invalid";
    return undefined;
}

function accessOf(v: unknown): SubaccountRecord["access_settings"] {
    const given = obj(v) ?? {};
    return {
        reachable_externally: bool(given.reachableExternally) ?? false,
        samba_enabled: bool(given.sambaEnabled) ?? false,
        ssh_enabled: bool(given.sshEnabled) ?? false,
        webdav_enabled: bool(given.webdavEnabled) ?? false,
        readonly: bool(given.readonly) ?? false,
    };
}

function accessProps(a: SubaccountRecord["access_settings"]): Props {
    return Object.fromEntries(ACCESS.map((k) => [k, a[SNAKE[k]]]));
}

function attributes(box: StorageBoxRecord, s: SubaccountRecord, password: unknown): Props {
    return {
        storageBoxId: box.id,
        name: s.name,
        description: s.description,
        homeDirectory: s.home_directory,
        username: s.username,
        server: s.server,
        accessSettings: accessProps(s.access_settings),
        labels: s.labels,
        password,
    };
}

/** The login on the box's SFTP server: added (or replaced) while SSH is enabled, removed otherwise. */
function syncLogin(box: StorageBoxRecord, s: SubaccountRecord, password: string | undefined): void {
    if (s.access_settings.ssh_enabled && password !== undefined) {
        execFileSync("bash", [serverScript(), "add-user", box.dir, s.username, s.home_directory.replace(/\/$/, "")], { input: `${password}\n`, stdio: ["pipe", "pipe", "pipe"] });
    } else {
        execFileSync("bash", [serverScript(), "del-user", box.dir, s.username], { stdio: ["ignore", "pipe", "pipe"] });
    }
}

/** The plan: the schema's defaults for what the program left out. */
function planned(news: Props, name: unknown): Props {
    return {
        ...news,
        name,
        description: news.description ?? "",
        accessSettings: isUnknown(news.accessSettings) ? UNKNOWN : accessProps(accessOf(news.accessSettings)),
        labels: news.labels ?? {},
    };
}

const subaccount: ResourceType = {
    secretOutputs: ["password"],

    check(ctx, olds, news, seedBytes) {
        const failures: CheckFailure[] = [];
        for (const k of ["storageBoxId", "homeDirectory", "password"]) {
            if (news[k] === undefined || news[k] === null) {
                failures.push(resourceFailure(`Missing required argument. The argument "${k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}" is required, but no definition was found.`, ctx.name, k));
            }
        }
        const bad = labelProblem(news.labels);
        if (bad) failures.push(resourceFailure(bad.text, ctx.name, "labels"));
        const { name } = nameFor(ctx, olds, news, seedBytes);
        return { inputs: { ...news, name }, failures };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const plan = planned(news, news.name ?? olds.name);
        const acc: Record<string, DiffKind> = {};
        compare(acc, "storageBoxId", olds.storageBoxId, plan.storageBoxId, true);
        for (const k of ["name", "description", "homeDirectory", "password", "accessSettings"]) compare(acc, k, olds[k], plan[k]);
        compareLabels(acc, olds.labels, plan.labels);
        return diffOf(acc);
    },

    async create(_ctx, news, preview) {
        const plan = planned(news, news.name);
        if (preview) return { id: "", outs: { ...plan, username: UNKNOWN, server: UNKNOWN } };
        const boxId = num(plan.storageBoxId)!;
        const home = str(plan.homeDirectory) ?? "";
        const password = str(plan.password) ?? "";
        const homeWhy = homeProblem(home);
        if (homeWhy) throw frameworkInvalidField("invalid input in field 'home_directory'", "home_directory", [homeWhy]);
        const passwordWhy = passwordProblem(password);
        if (passwordWhy) throw frameworkInvalidField("invalid input in field 'password'", "password", [passwordWhy]);
        const made = await boxes((all) => {
            const box = all[String(boxId)];
            if (!box) throw frameworkError(`Storage Box with ID ${boxId} not found`, "not_found", 404);
            const n = box.next_sub++;
            const s: SubaccountRecord = {
                id: Number(`${boxId}${String(n).padStart(3, "0")}`),
                name: String(plan.name),
                description: str(plan.description) ?? "",
                username: `${box.username}-sub${n}`,
                home_directory: home,
                server: box.server,
                access_settings: accessOf(plan.accessSettings),
                labels: labelsOf(plan.labels),
                created: now(),
            };
            box.subaccounts[String(s.id)] = s;
            return { box, s };
        });
        syncLogin(made.box, made.s, password);
        return { id: String(made.s.id), outs: attributes(made.box, made.s, password) };
    },

    async read(_ctx, id, state, inputs) {
        const all = seed(project.read() as WithBoxes);
        const box = all[String(num(state.storageBoxId))];
        const s = box?.subaccounts[id];
        if (!box || !s) return undefined;
        return { id, props: attributes(box, s, state.password), inputs };
    },

    async update(_ctx, id, olds, news, _oldInputs, preview) {
        const plan = planned(news, news.name ?? olds.name);
        if (preview) return { ...olds, ...plan, username: olds.username, server: olds.server };
        const password = str(plan.password) ?? str(olds.password);
        if (str(plan.homeDirectory) !== str(olds.homeDirectory)) {
            const why = homeProblem(str(plan.homeDirectory) ?? "");
            if (why) throw frameworkInvalidField("invalid input in field 'home_directory'", "home_directory", [why]);
        }
        if (password !== str(olds.password)) {
            const why = passwordProblem(password ?? "");
            if (why) throw frameworkInvalidField("invalid input in field 'password'", "password", [why]);
        }
        const done = await boxes((all) => {
            const box = all[String(num(olds.storageBoxId))];
            const s = box?.subaccounts[id];
            if (!box || !s) throw frameworkError("Storage Box Subaccount not found", "not_found", 404);
            // Actions in upstream's order: home directory, password, access settings; then the fields.
            s.home_directory = str(plan.homeDirectory) ?? s.home_directory;
            s.access_settings = accessOf(plan.accessSettings);
            s.name = String(plan.name);
            s.description = str(plan.description) ?? "";
            s.labels = labelsOf(plan.labels);
            return { box, s };
        });
        syncLogin(done.box, done.s, password);
        return attributes(done.box, done.s, password);
    },

    async delete(_ctx, id, state) {
        const gone = await boxes((all) => {
            const box = all[String(num(state.storageBoxId))];
            const s = box?.subaccounts[id];
            if (!box || !s) return undefined; // not found: done, as upstream's Delete
            delete box.subaccounts[id];
            return { box, s };
        });
        // The login goes; its directory (the repository) stays on the box.
        if (gone) syncLogin(gone.box, { ...gone.s, access_settings: { ...gone.s.access_settings, ssh_enabled: false } }, undefined);
    },
};

function boxResult(b: StorageBoxRecord): Props {
    return {
        id: b.id,
        name: b.name,
        username: b.username,
        server: b.server,
        location: b.location,
        storageBoxType: b.storage_box_type,
        labels: b.labels,
        system: "FSN1-BX1",
        deleteProtection: false,
        accessSettings: { reachableExternally: true, sambaEnabled: false, sshEnabled: true, webdavEnabled: false, zfsEnabled: false },
        snapshotPlan: {},
    };
}

export const storageBoxFunctions: Record<string, Invoke> = {
    "hcloud:index/getStorageBox:getStorageBox": async (args) => {
        const failures = exactlyOne(args, ["id", "name", "withSelector"], ["id", "name", "with_selector"]);
        if (failures) return { failures };
        const all = await boxes((b) => b);
        let box: StorageBoxRecord | undefined;
        if (num(args.id) !== undefined) {
            box = all[String(args.id)];
            if (!box) throw notFound("storage box", "id", args.id);
        } else if (str(args.name) !== undefined) {
            box = Object.values(all).find((b) => b.name === str(args.name));
            if (!box) throw notFound("storage box", "name", args.name);
        } else {
            throw new Error("stand-in hcloud: getStorageBox by with_selector is not modelled");
        }
        return boxResult(box);
    },
};

export const storageBoxResources: Record<string, ResourceType> = {
    "hcloud:index/storageBoxSubaccount:StorageBoxSubaccount": subaccount,
};
