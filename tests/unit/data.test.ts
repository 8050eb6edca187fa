import { dataProblems, existingVolumeProblems } from "../../src/preflight";
import { SERVER_TYPES, evaluation, runProgram, valueOf } from "./program";

const WITH_VOLUME = { "blog:dataVolumeSize": "20" };
const DATA_HOST = { ...evaluation(), host: { ...evaluation().host, dataVolume: true } };
const COMMAND = "command:local:Command";

describe("the data volume", () => {
    test("a formatted, protected volume in the server's location, attached without Hetzner's automount", async () => {
        const run = await runProgram({ config: WITH_VOLUME, evaluation: DATA_HOST });
        const volume = run.one("hcloud:index/volume:Volume");
        expect(volume.inputs).toMatchObject({ size: 20, location: "nbg1", format: "ext4", automount: false, deleteProtection: true });
        expect(volume.inputs.labels).toMatchObject({ "managed-by": "pulumi", stack: "test" });
        expect(volume.opts.retainOnDelete).toBe(true);
        const attachment = run.one("hcloud:index/volumeAttachment:VolumeAttachment");
        expect(attachment.inputs).toMatchObject({ automount: false, volumeId: Number(volume.id), serverId: Number(run.one("hcloud:index/server:Server").id) });
        expect(attachment.opts.deleteBeforeReplace).toBe(true);
    });

    test("is attached after the install, used before the deploy, and released by the command's delete on the old server", async () => {
        const run = await runProgram({ config: WITH_VOLUME, evaluation: DATA_HOST });
        const component = run.one("blog:hetzner:DataVolume");
        expect(component.opts.dependsOn).toEqual([expect.objectContaining({ __pulumiType: "blog:nixos:Install" })]);
        const use = run.all(COMMAND).find((r) => r.name === "blog-use")!;
        expect(use.inputs).toMatchObject({ create: "bash scripts/data-volume.sh attach", delete: "bash scripts/data-volume.sh release" });
        expect(use.inputs.environment).toMatchObject({
            TARGET_HOST: "203.0.113.10",
            DATA_DEVICE: `/dev/disk/by-id/scsi-0HC_Volume_${run.one("hcloud:index/volume:Volume").id}`,
        });
        expect(use.opts.dependsOn).toEqual([expect.objectContaining({ __pulumiType: "hcloud:index/volumeAttachment:VolumeAttachment" })]);
        const deploy = run.one("blog:nixos:Deploy");
        expect(deploy.opts.dependsOn).toEqual([expect.objectContaining({ __pulumiType: "blog:hetzner:DataVolume" })]);
    });

    test("deleteDataOnDestroy lifts the protection and lets destroy delete it; the output says which", async () => {
        const run = await runProgram({ config: { ...WITH_VOLUME, "blog:dataVolumeDeleteOnDestroy": "true" }, evaluation: DATA_HOST });
        const volume = run.one("hcloud:index/volume:Volume");
        expect(volume.inputs.deleteProtection).toBe(false);
        expect(volume.opts.retainOnDelete).toBe(false);
        expect(await valueOf(run.outputs.dataVolume as any)).toMatchObject({ id: volume.id, keptOnDestroy: false });
    });

    test("a host file that expects a volume needs one from the stack", async () => {
        await expect(runProgram({ evaluation: DATA_HOST })).rejects.toThrow("blog:dataVolumeSize: got 0; expected a size in GB from 10 to 10240");
    });

    test("a volume from the stack needs a host file that mounts it", async () => {
        await expect(runProgram({ config: WITH_VOLUME })).rejects.toThrow(
            "config.blog.host.dataVolume: got false; expected true, as blog:dataVolumeSize (20) attaches a volume",
        );
    });

    test("only a Hetzner server the stack creates gets a volume", async () => {
        await expect(runProgram({ config: { ...WITH_VOLUME, "blog:host": "existing", "blog:hostIpv4": "203.0.113.7", "blog:hostKey": evaluation().host.adminSshKeys[0] } })).rejects.toThrow(
            "blog:dataVolumeSize: got \"20\"; expected 0: it applies to a Hetzner server the stack creates",
        );
    });

    test("a volume you have (dataVolumeId) is attached and used, never created, never deleted", async () => {
        const run = await runProgram({
            config: { "blog:dataVolumeId": "4711" },
            evaluation: DATA_HOST,
            volumes: { 4711: { name: "kept-from-before", size: 50, location: "nbg1" } },
        });
        expect(run.all("hcloud:index/volume:Volume")).toEqual([]);
        expect(run.one("hcloud:index/volumeAttachment:VolumeAttachment").inputs.volumeId).toBe(4711);
        expect(run.all(COMMAND).find((r) => r.name === "blog-use")!.inputs.environment.DATA_DEVICE).toBe("/dev/disk/by-id/scsi-0HC_Volume_4711");
        expect(await valueOf(run.outputs.dataVolume as any)).toEqual({ id: "4711", name: "kept-from-before", keptOnDestroy: true });
        expect(existingVolumeProblems({ id: 4711, name: "v", location: "hel1", serverId: 9 }, "nbg1", [8]).map(String)).toEqual([
            expect.stringContaining('blog:dataVolumeId: got "4711"; expected a volume in nbg1, the server\'s location: v is in hel1'),
            expect.stringContaining("v is attached to server 9; stop what uses it there and detach it first"),
        ]);
        expect(existingVolumeProblems({ id: 4711, name: "v", location: "nbg1", serverId: 8 }, "nbg1", [8])).toEqual([]);
    });

    test("Hetzner's backups are off unless asked for", async () => {
        expect((await runProgram()).one("hcloud:index/server:Server").inputs.backups).toBe(false);
        expect((await runProgram({ config: { "blog:backups": "true" } })).one("hcloud:index/server:Server").inputs.backups).toBe(true);
    });
});

describe("what a plan does to the data (preflight)", () => {
    const server = { serverType: "cx23", location: "nbg1", primaryDiskSize: 40 };
    const volume = { name: "blog-volume-1", id: 7, size: 20, location: "nbg1", serverId: 42 };
    const base = { volumeSize: 20, deleteOnDestroy: false, location: "nbg1", system: "x86_64-linux" as const, server, types: SERVER_TYPES };

    test("a volume cannot follow the server to another location, nor shrink", () => {
        const { problems } = dataProblems({ ...base, current: volume, location: "hel1", volumeSize: 10 });
        expect(problems.map(String)).toEqual([
            expect.stringContaining('blog:location: got "hel1"; expected nbg1, where the data volume blog-volume-1 (id 7) is'),
            expect.stringContaining("blog:dataVolumeSize: got 10; expected at least 20: the data volume blog-volume-1 has 20 GB"),
        ]);
    });

    test("a replacement without a volume warns of data loss; with one, says that the volume moves", () => {
        const arm = { ...base, system: "aarch64-linux" as const };
        expect(dataProblems({ ...arm, volumeSize: 0 }).warnings).toEqual([expect.stringMatching(/^DATA LOSS: this plan replaces the server/)]);
        expect(dataProblems({ ...arm, current: volume }).warnings).toEqual([
            expect.stringContaining("the data volume blog-volume-1 moves to it. The services on the old server stop"),
        ]);
        expect(dataProblems({ ...base, current: volume }).warnings).toEqual([]);
    });

    test("removing the volume from the stack says whether it is deleted or kept", () => {
        expect(dataProblems({ ...base, volumeSize: 0, current: volume }).warnings).toEqual([
            expect.stringContaining("detaches the data volume blog-volume-1 (id 7) and lets go of it; Hetzner keeps it"),
        ]);
        expect(dataProblems({ ...base, volumeSize: 0, deleteOnDestroy: true, current: volume }).warnings).toEqual([
            expect.stringMatching(/^DATA LOSS: .* DELETES the data volume blog-volume-1/),
        ]);
        expect(dataProblems({ ...base, volumeSize: 0, current: { ...volume, serverId: undefined } }).warnings).toEqual([]);
        expect(dataProblems({ ...base, deleteOnDestroy: true, current: volume }).warnings).toEqual([
            expect.stringContaining("blog:dataVolumeDeleteOnDestroy is true: `pulumi destroy` DELETES the data volume blog-volume-1 (id 7)"),
        ]);
    });
});
