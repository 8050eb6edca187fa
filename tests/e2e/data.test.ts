// The data volume with the real engine: attached after the install and labelled, moved to a new
// server in an order that never has it mounted twice, refused where it cannot go, and kept by
// destroy.
import * as fs from "fs";
import { E2eStack, OpResult, changes, ok, startedAt } from "./harness";

// Each operation runs the real CLI, which compiles the program and starts the providers.
jest.setTimeout(600_000);

const s = new E2eStack("data");
const MARK = `written-before-the-move-${process.pid}`;

interface Volume {
    id: number;
    name: string;
    server: number | null;
    location: string;
    /** Each detach from a running server, and where the volume was still mounted in it then. */
    detaches?: Array<{ server: number; mounted: string[] }>;
}

/** The one Hetzner volume of the fake cloud. */
function volume(): Volume {
    const all = Object.values(s.cloud("hcloud").volumes ?? {}) as Volume[];
    expect(all).toHaveLength(1);
    return all[0];
}

/** Where a step of a resource finished, for one kind of step (create, delete, create-replacement, delete-replaced...). */
function finished(r: OpResult, name: string, op: string): number {
    return r.events.findIndex((e) => e.resOutputsEvent?.metadata.op === op && e.resOutputsEvent.metadata.urn.endsWith(`::${name}`));
}

function started(r: OpResult, name: string, op: string): number {
    return r.events.findIndex((e) => e.resourcePreEvent?.metadata.op === op && e.resourcePreEvent.metadata.urn.endsWith(`::${name}`));
}

beforeAll(() => s.init({ "blog:dataVolumeSize": "10" }, {}, { host: { dataVolume: true } }), 600_000);

afterAll(() => s.cleanup(), 120_000);

test("up creates the volume, attaches it after the install, labels it and mounts it at /data before the deploy", async () => {
    const r = ok(await s.up());
    const v = volume();
    expect(v.server).toBe(Number((await s.outputs()).serverId));
    expect(startedAt(r, "blog-attachment")).toBeGreaterThan(startedAt(r, "blog-nixos-anywhere"));
    expect(finished(r, "blog-use", "create")).toBeLessThan(startedAt(r, "blog-switch"));
    const [dir] = s.targetDirs();
    expect(s.onTarget(dir, `blkid -s LABEL -o value /dev/disk/by-id/scsi-0HC_Volume_${v.id}`)).toBe("blog-data");
    expect(s.onTarget(dir, "findmnt -n -o SOURCE /data")).toMatch(/^\/dev\/loop\d+$/);
    s.onTarget(dir, `echo ${MARK} > /data/mark && sync`);
    expect(await s.outputs()).toMatchObject({ dataVolume: { id: String(v.id), name: v.name, keptOnDestroy: true } });
});

test("a new location is refused at preview: the volume cannot follow; nothing changes", async () => {
    await s.setConfig({ "blog:location": "fsn1" });
    const p = await s.preview();
    expect(p.error).toBeDefined();
    expect(p.log).toContain('blog:location: got "fsn1"; expected nbg1, where the data volume');
    await s.setConfig({ "blog:location": "nbg1" });
});

test("a bigger volumeSize grows the volume in place, and the attach grows /data to it", async () => {
    const [dir] = s.targetDirs();
    const device = `/dev/disk/by-id/scsi-0HC_Volume_${volume().id}`;
    const deviceSize = () => Number(s.onTarget(dir, `blockdev --getsize64 ${device}`));
    const fsSize = () => Number(s.onTarget(dir, "df -k --output=size /data | tail -n 1"));
    const [deviceBefore, fsBefore] = [deviceSize(), fsSize()];
    await s.setConfig({ "blog:dataVolumeSize": "12" });
    const p = ok(await s.preview());
    expect(changes(p).sort()).toEqual(["update blog-use", "update blog-volume"]);
    const r = ok(await s.up());
    expect(deviceSize()).toBeGreaterThan(deviceBefore);
    // Growing a mounted ext4 needs CAP_SYS_RESOURCE (the kernel's ext4_resize_begin): where the
    // test runs without it, the attach says so and leaves the growth to the next boot.
    const capEff = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(fs.readFileSync("/proc/self/status", "utf8"))![1]}`);
    if ((capEff >> 24n) & 1n) expect(fsSize()).toBeGreaterThan(fsBefore);
    else expect(r.log).toContain(`could not grow the file system on ${device} online`);
    expect(s.onTarget(dir, "cat /data/mark")).toBe(MARK);
});

test("a new architecture: preview says the volume moves; up releases it on the old server before the detach, and the new one has the data", async () => {
    const before = await s.outputs();
    s.setConfiguration("blog-arm", { host: s.hostFacts({ system: "aarch64-linux", dataVolume: true }), closure: "arm" });
    await s.setConfig({ "blog:serverType": "cax11", "blog:nixosConfiguration": "blog-arm" });
    const p = ok(await s.preview());
    expect(p.log).toContain("This plan replaces the server");
    expect(p.log).toContain("moves to it");
    expect(changes(p)).toEqual(expect.arrayContaining(["replace blog-server", "replace blog-attachment", "replace blog-use"]));

    const r = ok(await s.up());
    // Released on the old server (services stopped, unmounted), then detached, then attached to the new one.
    const released = finished(r, "blog-use", "delete-replaced");
    const detached = finished(r, "blog-attachment", "delete-replaced");
    const attached = finished(r, "blog-attachment", "create-replacement");
    const used = finished(r, "blog-use", "create-replacement");
    expect(released).toBeGreaterThanOrEqual(0);
    expect(released).toBeLessThan(started(r, "blog-attachment", "delete-replaced"));
    expect(detached).toBeLessThan(attached);
    expect(attached).toBeLessThan(used);
    expect(used).toBeLessThan(startedAt(r, "blog-switch"));
    // The new server was installed before the volume reached it.
    expect(finished(r, "blog-nixos-anywhere", "create-replacement")).toBeLessThan(attached);

    const after = await s.outputs();
    expect(after.serverId).not.toBe(before.serverId);
    expect(volume().server).toBe(Number(after.serverId));
    // When it was detached, nothing on the old server had it mounted any more.
    expect(volume().detaches).toEqual([{ server: Number(before.serverId), at: expect.any(String), mounted: [] }]);
    const [dir] = s.targetDirs();
    expect(s.onTarget(dir, "cat /data/mark")).toBe(MARK);
});

test("destroy releases the volume, removes the server, and keeps the volume, detached, with its data", async () => {
    const v = volume();
    const server = (await s.outputs()).serverId;
    ok(await s.destroy());
    expect(s.targetDirs()).toEqual([]);
    expect(Object.keys(s.cloud("hcloud").servers ?? {})).toEqual([]);
    expect(volume()).toMatchObject({ id: v.id, server: null });
    expect(volume().detaches?.pop()).toMatchObject({ server: Number(server), mounted: [] });
});
