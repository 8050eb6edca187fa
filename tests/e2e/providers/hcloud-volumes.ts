// Hetzner volumes, for the stand-in hcloud provider (hcloud.ts serves these): the resources
// `Volume` and `VolumeAttachment`, over the volumes of $BLOG_E2E_CLOUD_DIR/hcloud.json. A volume's
// disk is a sparse image file, $BLOG_E2E_CLOUD_DIR/volumes/<id>/disk.img, of 1 MiB per GB of `size`
// (10 GB: 10 MiB; scaled down so that a test machine holds many, and ext4's background inode-table
// initialisation has little to write). A create with `format: "ext4"` formats it as Hetzner does,
// once: mkfs.ext4 -F, no label; without a format it stays blank. It outlives the servers it is
// attached to. Attached, it is a block device inside that server's target: target.sh attach-disk
// (tests/integration/harness/target.sh) makes the image a loop device of this machine, whose node
// appears in the target (a container: this machine's /dev/disk is not touched), linked as
// /dev/disk/by-id/scsi-0HC_Volume_<id>, the volume's linuxDevice. Nothing mounts it: `automount` is
// recorded only (the servers play NixOS hosts, which mount their volumes themselves). Detaching runs
// target.sh detach-disk: a file system still mounted from it inside the target is unmounted lazily
// first (Hetzner detaches a volume in use, too; unlike there, the file system is still unmounted
// cleanly once its last user lets go), then the link goes, then the loop device. Deleting a server
// stops its target, which detaches its loop devices.
//
// What it models, and where that comes from:
//   hetznercloud/terraform-provider-hcloud v1.66.1 (SDKv2 resources; pulumi/pulumi-hcloud c3608de6
//   schema.json agrees: Volume location and VolumeAttachment volumeId, serverId willReplaceOnChanges):
//     internal/volume/resource.go      name, size Required; location Optional+Computed ForceNew;
//                                      server_id Optional+Computed (a change detaches, then attaches:
//                                      in place); labels; automount, format Optional and never read
//                                      back; delete_protection default false; linux_device computed;
//                                      Create (server_id and location as given, automount/format only
//                                      when true/non-empty: GetOk), Update's order (name, server_id,
//                                      size, labels, protection), Delete detaches first, then deletes
//                                      (so a protected volume ends up detached and not deleted);
//                                      getVolumeAttributes leaves server_id as it was when the volume
//                                      is not attached
//     internal/volume/resource_attachment.go   volume_id, server_id ForceNew; automount
//                                      Optional+Computed with no Update (terraform-plugin-sdk v2.40.1
//                                      helper/schema/resource.go Apply: "doesn't support update"); the
//                                      id is the volume's id; Read drops the attachment when the volume
//                                      is gone, not attached, or its server is gone, and takes server_id
//                                      from the volume; Delete detaches the volume from whatever server
//   hetznercloud/hcloud-go v2.44.0 hcloud/volume.go VolumeCreateOpts.Validate (refused before any
//     request: no server nor location, both, automount without server), error.go (texts; codes
//     volume_already_attached "Volume is already attached to a server, detach first").
//   Hetzner Cloud API reference: volumes "Create a Volume" (10 GB to 10240 GB; names of
//     alphanumerics, "-", "_", "." starting and ending alphanumeric, at most 64, unique per
//     project; the server's location when a server is given), "Attach Volume to a Server" (only a
//     server in the volume's location), "Resize Volume" (no downsizing), "Delete a Volume" (must
//     not be attached nor protected), "Delete a Server" (attached volumes are detached).
// API refusals from users' reports: "server and volume must be in the same location
// (service_error)" (hetznercloud/terraform-provider-hcloud#253: a Volume moved to a server in
// another location is detached first and stays detached). Not verified: the texts for a size out
// of range or smaller than the current one, a bad name or format (invalid_input, wording this
// stand-in's), "volume deletion is protected (protected)", which check the API makes first when a
// volume is both attached elsewhere and in another location (here: attached first). The provider's
// retries (5 tries, 1 s doubling backoff, on update and delete) are not waited out.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { multiError, resourceFailure } from "./lib/bridge";
import { CheckFailure, InitError, Invoke, ResourceType } from "./lib/host";
import {
    Project,
    VolumeRecord,
    apiError,
    catalog,
    compare,
    compareLabels,
    diffOf,
    listId,
    selects,
    labelProblem,
    labelsOf,
    locationOf,
    nameFor,
    nameTaken,
    now,
    project,
    sdkError,
    sdkInvalidInput,
} from "./lib/hcloud-api";
import { repoRoot } from "./lib/repo";
import { cloudDir } from "./lib/store";
import { targetAlive } from "./lib/target";
import { DiffKind, Props, UNKNOWN, bool, num, str } from "./lib/values";

const SIZE_MIN = 10;
const SIZE_MAX = 10240;
const VOLUME_NAME = /^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,62}[a-zA-Z0-9])?$/;

const linuxDeviceOf = (id: number) => `/dev/disk/by-id/scsi-0HC_Volume_${id}`;
/** The name of the link target.sh makes in the target's /dev/disk/by-id. */
const diskNameOf = (id: number) => `scsi-0HC_Volume_${id}`;
/** The volume's disk, in its directory. */
const imageOf = (dir: string) => path.join(dir, "disk.img");
/** The image's size: 1 MiB per GB (see the header). */
const imageBytes = (sizeGb: number) => sizeGb * 1024 * 1024;

function sh(cmd: string, args: string[]): string {
    try {
        return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
    } catch (e) {
        const err = e as { stderr?: string; message: string };
        throw new Error(`stand-in hcloud: ${cmd} ${args.join(" ")} failed: ${err.stderr?.trim() || err.message}`);
    }
}

const targetSh = (args: string[]) => sh("bash", [path.join(repoRoot(), "tests/integration/harness/target.sh"), ...args]);

/** A new volume's disk: a sparse image, formatted ext4 as Hetzner does (no label) when asked. */
function createDisk(dir: string, sizeGb: number, format: string): void {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    fs.writeFileSync(imageOf(dir), "");
    fs.truncateSync(imageOf(dir), imageBytes(sizeGb));
    if (format === "ext4") sh("mkfs.ext4", ["-q", "-F", imageOf(dir)]);
}

/** A resize grows the image; an attached loop device learns its new size (the file system does not grow). */
function growDisk(dir: string, sizeGb: number): void {
    fs.truncateSync(imageOf(dir), imageBytes(sizeGb));
    for (const device of sh("losetup", ["-n", "-O", "NAME", "-j", imageOf(dir)]).split("\n").filter(Boolean)) {
        sh("losetup", ["-c", device.trim()]);
    }
}

/** A refusal of the API, as an SDKv2 resource reports it (hcloudutil.ErrorToDiag). */
const refusal = (message: string, code: string) => sdkError(apiError(message, code));

/**
 * POST /volumes/{id}/actions/attach: its refusals, then the volume is the server's and its disk
 * appears inside the server's target as linuxDevice. Returns the volume.
 */
async function attach(volumeId: number, serverId: number, automount: boolean | null): Promise<VolumeRecord> {
    const { volume, targetDir } = await project.update((p) => {
        const v = p.volumes[volumeId];
        if (!v) throw refusal(`volume with ID '${volumeId}' not found`, "not_found");
        const s = p.servers[serverId];
        if (!s) throw refusal(`server with ID '${serverId}' not found`, "not_found");
        if (v.server !== null) throw refusal("Volume is already attached to a server, detach first", "volume_already_attached");
        if (s.location !== v.location) throw refusal("server and volume must be in the same location", "service_error");
        v.server = serverId;
        v.automount = automount;
        return { volume: { ...v }, targetDir: s.target.dir };
    });
    if (!targetAlive(targetDir)) return volume;
    try {
        targetSh(["attach-disk", targetDir, imageOf(volume.dir), diskNameOf(volumeId)]);
    } catch (e) {
        throw new Error(`stand-in hcloud: volume ${volumeId} could not appear in the server's machine (${targetDir}): ${(e as Error).message}`);
    }
    return project.update((p) => {
        const v = p.volumes[volumeId];
        v.mount = { server: serverId, path: v.linux_device };
        return v;
    });
}

/** POST /volumes/{id}/actions/detach: the volume leaves its server (and that server's target). */
async function detach(volumeId: number): Promise<void> {
    const was = await project.update((p) => {
        const v = p.volumes[volumeId];
        if (!v || v.server === null) return undefined;
        const mount = v.mount;
        const s = p.servers[v.server];
        v.server = null;
        v.mount = null;
        return mount && s ? { dir: s.target.dir, server: s.id } : undefined;
    });
    if (!was) return;
    // target.sh prints the mount points it had to take away: where the volume was still in use.
    const mounted = targetSh(["detach-disk", was.dir, diskNameOf(volumeId)]).split("\n").filter(Boolean);
    await project.update((p) => {
        const v = p.volumes[volumeId];
        if (v) v.detaches = [...(v.detaches ?? []), { server: was.server, at: now(), mounted }];
    });
}

/**
 * What deleting a server does to its volumes: they are detached (the API reference's "Delete a
 * Server"). Called inside the server's delete, after its target stopped: the stop took the
 * target's mounts and the volumes' loop devices with it.
 */
export function detachVolumesOf(p: Project, serverId: number): void {
    for (const v of Object.values(p.volumes)) {
        if (v.server !== serverId) continue;
        v.server = null;
        v.mount = null;
    }
}

// ---------------------------------------------------------------------------------------------
// Volume (internal/volume/resource.go, SDKv2)

/** getVolumeAttributes: what the resource and the data sources read of a volume, its server aside. */
function volumeAttributes(v: VolumeRecord): Props {
    return {
        name: v.name,
        size: v.size,
        location: v.location,
        labels: v.labels,
        linuxDevice: v.linux_device,
        deleteProtection: v.protection.delete,
    };
}

/** getVolumeAttributes, plus what the state keeps from the configuration (automount, format). */
function volumeOutputs(v: VolumeRecord, inputs: Props, prior: Props = {}): Props {
    const out: Props = {
        ...volumeAttributes(v),
        // Not attached: getVolumeAttributes sets no server_id, the state keeps what it had.
        serverId: v.server ?? num(prior.serverId) ?? 0,
    };
    if (inputs.automount !== undefined) out.automount = inputs.automount;
    if (inputs.format !== undefined) out.format = inputs.format;
    return out;
}

function sizeProblem(size: number): Error | undefined {
    if (size < SIZE_MIN || size > SIZE_MAX) {
        return sdkInvalidInput("invalid input in field 'size'", [`size => [must be between ${SIZE_MIN} and ${SIZE_MAX}]`]);
    }
    return undefined;
}

const volume: ResourceType = {
    check(ctx, olds, news, seed) {
        const failures: CheckFailure[] = [];
        const { name, defaulted } = nameFor(ctx, olds, news, seed);
        const inputs: Props = { ...news, name };
        const defaults: string[] = defaulted ? ["name"] : [];
        // delete_protection: Default false; the bridge writes it into the checked inputs.
        if (inputs.deleteProtection === undefined) {
            inputs.deleteProtection = false;
            defaults.push("deleteProtection");
        }
        inputs.__defaults = defaults;
        const labels = labelProblem(news.labels);
        if (labels) failures.push(resourceFailure(labels.text, ctx.name, "labels"));
        return { inputs, failures };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const acc: Record<string, DiffKind> = {};
        compare(acc, "name", olds.name, news.name);
        compare(acc, "size", olds.size, news.size);
        // Optional+Computed: left out, the state's value stands.
        if (news.location !== undefined) compare(acc, "location", olds.location, news.location, true);
        if (news.serverId !== undefined) compare(acc, "serverId", olds.serverId, news.serverId);
        compareLabels(acc, olds.labels, news.labels ?? {});
        compare(acc, "automount", olds.automount, news.automount);
        compare(acc, "format", olds.format, news.format);
        compare(acc, "deleteProtection", olds.deleteProtection ?? false, news.deleteProtection ?? false);
        return diffOf(acc);
    },

    async create(_ctx, news, preview) {
        if (preview) {
            const outs: Props = { ...news, linuxDevice: UNKNOWN, location: news.location ?? UNKNOWN, serverId: news.serverId ?? UNKNOWN, labels: news.labels ?? {} };
            delete outs.__defaults;
            return { id: "", outs };
        }
        const name = String(news.name);
        const size = num(news.size) ?? 0;
        // d.GetOk: a zero value counts as not set.
        const serverId = num(news.serverId) || 0;
        const locationName = str(news.location) || "";
        const automount = bool(news.automount) === true;
        const format = str(news.format) || "";
        // hcloud-go VolumeCreateOpts.Validate, before any request.
        if (size <= 0) throw sdkError(`invalid value '${size}' for field [Size] in [hcloud.VolumeCreateOpts]`);
        if (!serverId && !locationName) throw sdkError("missing one of fields [Server, Location] in [hcloud.VolumeCreateOpts]");
        if (serverId && locationName) throw sdkError("found mutually exclusive fields [Server, Location] in [hcloud.VolumeCreateOpts]");
        if (!serverId && automount) throw sdkError("missing required together fields [Automount, Server] in [hcloud.VolumeCreateOpts]");
        // The API's checks.
        const sizeBad = sizeProblem(size);
        if (sizeBad) throw sizeBad;
        if (!VOLUME_NAME.test(name)) throw sdkInvalidInput("invalid input in field 'name'", ["name => [invalid volume name]"]);
        if (format && !["ext4", "xfs"].includes(format)) throw sdkInvalidInput("invalid input in field 'format'", ["format => [must be one of: ext4, xfs]"]);
        if (locationName && !locationOf(catalog(), locationName)) throw sdkInvalidInput(`location '${locationName}' not found`);
        if (format === "xfs") throw new Error("stand-in hcloud: format xfs is not modelled (this machine has no mkfs.xfs); use ext4");
        const record = await project.update((p) => {
            let location = locationName;
            if (serverId) {
                const s = p.servers[serverId];
                if (!s) throw refusal(`server with ID '${serverId}' not found`, "not_found");
                location = s.location;
            }
            if (nameTaken(p.volumes, name)) throw refusal("name is already used", "uniqueness_error");
            const id = p.next_id++;
            const v: VolumeRecord = {
                id,
                name,
                size,
                location,
                server: null,
                automount: null,
                format: format || null,
                labels: labelsOf(news.labels),
                // Create sets it after the volume exists (setProtection), when true.
                protection: { delete: bool(news.deleteProtection) ?? false },
                linux_device: linuxDeviceOf(id),
                status: "available",
                created: now(),
                dir: path.join(cloudDir(), "volumes", String(id)),
                mount: null,
            };
            createDisk(v.dir, size, format);
            p.volumes[id] = v;
            return v;
        });
        // With a server, the API attaches it right after creating it (next_actions: attach_volume).
        const attached = serverId ? await attach(record.id, serverId, automount ? true : null) : record;
        return { id: String(attached.id), outs: volumeOutputs(attached, news) };
    },

    async read(_ctx, id, state, inputs) {
        const v = project.read().volumes[id];
        return v ? { id, props: volumeOutputs(v, { ...inputs, automount: state.automount, format: state.format }, state), inputs } : undefined;
    },

    async update(ctx, id, olds, news, _oldInputs, preview) {
        if (preview) {
            const planned: Props = { ...olds };
            for (const [k, v] of Object.entries(news)) if (!k.startsWith("__")) planned[k] = v;
            return planned;
        }
        const partial = (e: Error): InitError => new InitError(e.message, id, olds, [`updating ${ctx.urn}: ${e.message}`]);
        const current = project.read().volumes[id];
        if (!current) return olds; // resourceVolumeIsNotFound: removed from the state
        // resourceVolumeUpdate, in its order.
        if (news.name !== olds.name) {
            await project.update((p) => {
                if (nameTaken(p.volumes, String(news.name), current.id)) throw partial(refusal("name is already used", "uniqueness_error"));
                p.volumes[id].name = String(news.name);
            });
        }
        if (news.serverId !== undefined && news.serverId !== olds.serverId) {
            const serverId = num(news.serverId) ?? 0;
            // Detach first (when attached), then attach: a refused attach leaves it detached.
            await detach(current.id);
            if (serverId !== 0) {
                try {
                    await attach(current.id, serverId, bool(news.automount) === true ? true : null);
                } catch (e) {
                    throw partial(e as Error);
                }
            }
        }
        if (news.size !== olds.size) {
            const size = num(news.size) ?? 0;
            const v = project.read().volumes[id];
            if (size < v.size) throw partial(sdkInvalidInput("invalid input in field 'size'", ["size => [must be greater than current size]"]));
            const bad = sizeProblem(size);
            if (bad) throw partial(bad);
            await project.update((p) => {
                growDisk(p.volumes[id].dir, size);
                p.volumes[id].size = size;
            });
        }
        const record = await project.update((p) => {
            const v = p.volumes[id];
            v.labels = labelsOf(news.labels);
            v.protection.delete = bool(news.deleteProtection) ?? false;
            return v;
        });
        return volumeOutputs(record, news, olds);
    },

    // resourceVolumeDelete: detach when attached, then delete (a protected volume stays, detached).
    async delete(_ctx, id) {
        const v = project.read().volumes[id];
        if (!v) return;
        if (v.server !== null) await detach(v.id);
        const dir = await project.update((p) => {
            const v = p.volumes[id];
            if (!v) return undefined;
            if (v.protection.delete) throw new Error(multiError([apiError("volume deletion is protected", "protected")]));
            delete p.volumes[id];
            return v.dir;
        });
        // All of the volume's data is destroyed.
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    },
};

// ---------------------------------------------------------------------------------------------
// VolumeAttachment (internal/volume/resource_attachment.go, SDKv2)

const volumeAttachment: ResourceType = {
    check(_ctx, _olds, news) {
        return { inputs: news };
    },

    diff(_ctx, _id, _oldInputs, olds, news) {
        const acc: Record<string, DiffKind> = {};
        compare(acc, "volumeId", olds.volumeId, news.volumeId, true);
        compare(acc, "serverId", olds.serverId, news.serverId, true);
        if (news.automount !== undefined) compare(acc, "automount", olds.automount, news.automount);
        return diffOf(acc);
    },

    async create(_ctx, news, preview) {
        if (preview) return { id: "", outs: { volumeId: news.volumeId, serverId: news.serverId, automount: news.automount ?? UNKNOWN } };
        const volumeId = num(news.volumeId) ?? 0;
        const serverId = num(news.serverId) ?? 0;
        // d.GetOk("automount"): only true is sent.
        const v = await attach(volumeId, serverId, bool(news.automount) === true ? true : null);
        return { id: String(v.id), outs: { volumeId, serverId, automount: news.automount ?? false } };
    },

    async read(_ctx, id, state, inputs) {
        const p = project.read();
        const v = p.volumes[id];
        if (!v || v.server === null) return undefined;
        const serverId = num(state.serverId) || v.server;
        if (!p.servers[serverId]) return undefined;
        return { id, props: { volumeId: v.id, serverId: v.server, automount: state.automount ?? false }, inputs };
    },

    async update(_ctx, _id, olds, news, _oldInputs, preview) {
        if (preview) return { ...olds, automount: news.automount };
        // No Update function: terraform-plugin-sdk's Apply refuses an in-place change.
        throw new Error(multiError(["doesn't support update"]));
    },

    // Detaches the volume from whichever server it is attached to; a volume gone is no error.
    async delete(_ctx, id) {
        const v = project.read().volumes[id];
        if (!v || v.server === null) return;
        await detach(v.id);
    },
};

// ---------------------------------------------------------------------------------------------
// Invokes: getVolume, getVolumes (internal/volume/data_source.go, SDKv2: getVolumeAttributes sets
// server_id only for an attached volume; the list is sorted by id)

function volumeResult(v: VolumeRecord): Props {
    const out: Props = { id: v.id, ...volumeAttributes(v) };
    if (v.server !== null) out.serverId = v.server;
    return out;
}

function volumesBySelector(p: Project, selector: string): VolumeRecord[] {
    return Object.values(p.volumes)
        .filter((v) => selects(selector, v.labels))
        .sort((a, b) => a.id - b.id);
}

export const volumeFunctions: Record<string, Invoke> = {
    // dataSourceHcloudVolumeRead: id first, then name, then a selector (SDKv2: no "exactly one"
    // validator, and its own error texts).
    "hcloud:index/getVolume:getVolume": (args) => {
        const p = project.read();
        const selector = str(args.withSelector) || str(args.selector) || "";
        let v: VolumeRecord | undefined;
        if (num(args.id)) {
            v = p.volumes[String(args.id)];
            if (!v) throw new Error(`no volume found with id ${args.id}`);
        } else if (str(args.name)) {
            v = Object.values(p.volumes).find((x) => x.name === str(args.name));
            if (!v) throw new Error(`no volume found with name ${args.name}`);
        } else if (selector) {
            const found = volumesBySelector(p, selector);
            if (found.length === 0) throw new Error(`no volume found for selector ${JSON.stringify(selector)}`);
            if (found.length > 1) throw new Error(`more than one volume found for selector ${JSON.stringify(selector)}`);
            v = found[0];
        } else {
            throw new Error("please specify an id, a name or a selector to lookup the volume");
        }
        const result = volumeResult(v);
        if (args.withSelector !== undefined) result.withSelector = args.withSelector;
        return result;
    },
    "hcloud:index/getVolumes:getVolumes": (args) => {
        const found = volumesBySelector(project.read(), str(args.withSelector) ?? "");
        const result: Props = { id: listId(found.map((v) => String(v.id))), volumes: found.map(volumeResult) };
        if (args.withSelector !== undefined) result.withSelector = args.withSelector;
        return result;
    },
};

export const volumeResources: Record<string, ResourceType> = {
    "hcloud:index/volume:Volume": volume,
    "hcloud:index/volumeAttachment:VolumeAttachment": volumeAttachment,
};
