# Disk layout and boot loader, applied by disko when nixos-anywhere installs
# the host: on a Hetzner Cloud server (the server's own disk, named below,
# unless blog.host.disk names it), or on a generic machine whose disk
# blog.host.disk names. A generic host without it brings its own hardware
# configuration (file systems, boot loader), and none of this applies.
# GPT:
#   1M BIOS boot partition (EF02)  for GRUB on x86 (legacy BIOS)
#   512M EFI system partition      mounted at /boot, for Arm (UEFI)
#   the rest                       ext4 root
# disko turns the EF02 partition into boot.loader.grub.devices = [ <disk> ].
# The root partition and its file system grow to the whole disk at boot, as a
# larger Hetzner server type (change_type with upgrade_disk) grows the disk and
# nothing inside the server would follow.
{
  config,
  lib,
  options,
  ...
}:
let
  facts = config.blog.host;
  isArm = facts.system == "aarch64-linux";

  # The Hetzner Cloud server's own disk, by a name an attached volume cannot
  # take. /dev/sdX follows probe order: with a volume attached, /dev/sda can
  # be the volume (tiiuae/ghaf-infra PR #199: after a reboot the volume was
  # /dev/sda and GRUB went onto it), and disko would erase it at an install.
  #   x86 (cx, cpx, ccx): the root disk is LUN 0 of the virtio-scsi
  #     controller at PCI 0000:06:00.0, volumes LUN 1 and up
  #     (/dev/disk/by-id/scsi-0HC_Volume_<id>). Public configurations use this
  #     path: tiiuae/ghaf-infra commit bd584ce "Use more specific disk names in
  #     hetzner" (hosts/ghaf-log/disk-config.nix, a cloud server with a
  #     volume), and others with volumes attached, one showing a ccx23's zpool
  #     on pci-0000:06:00.0-scsi-0:0:0:0-part2. A name that is missing makes
  #     the install fail before disko touches anything, where /dev/sda would
  #     have picked the wrong disk. Check `ls -l /dev/disk/by-path/` on a new
  #     server type.
  #   Arm (cax): no public configuration we found names its root disk by a
  #     stable path. The by-id name, scsi-0QEMU_QEMU_HARDDISK_<serial>
  #     (ghaf-infra hosts/builders/hetzarm-*), carries a per-server serial
  #     not known before the server exists, and the by-path name of the Arm
  #     PCI topology is not documented anywhere we could read. So /dev/sda,
  #     as before: install an Arm host before attaching a volume, or set
  #     blog.host.disk. After the install nothing on Arm uses the name: GRUB
  #     installs to the ESP (devices = [ "nodev" ] below), and disko mounts
  #     by partition label (disko v1.13.0 lib/types/gpt.nix: a partition's
  #     device is /dev/disk/by-partlabel/disk-main-<name>; on x86 the EF02
  #     partition sets boot.loader.grub.devices = [ device ]).
  hetznerRootDisk = if isArm then "/dev/sda" else "/dev/disk/by-path/pci-0000:06:00.0-scsi-0:0:0:0";
  device = if facts.disk != null then facts.disk else hetznerRootDisk;

  # boot.growPartition is a boolean in the nixpkgs read (nixos/modules/system/
  # boot/grow-partition.nix, since NixOS/nixpkgs PR 261449 "Resize partition
  # online instead of in initrd"); NixOS/nixpkgs PR 447165, open when read,
  # would make it { enable, mountPoint }. Set whichever this nixpkgs declares.
  growPartitionOn =
    if options.boot.growPartition ? enable then { enable = true; } else true;
in
{
  config = lib.mkIf (facts.platform == "hetzner-cloud" || facts.disk != null) {
    boot.loader.grub = {
      enable = true;
      # The BIOS target goes to the disk that disko names from the EF02
      # partition (disko sets boot.loader.grub.devices); the EFI target goes to
      # the ESP at /boot under the removable path (EFI/BOOT/BOOT*.EFI), which
      # needs no NVRAM entry, so nothing here depends on the firmware's state.
      efiSupport = true;
      efiInstallAsRemovable = true;
      # Keep the 512M /boot bounded: each entry can pin its own kernel and
      # initrd there. Upkeep keeps 3 system generations anyway.
      configurationLimit = lib.mkDefault 5;
    };

    # Grow the root partition, then its file system, at every boot; both do
    # nothing when there is nothing to grow. The growth runs in stage 2, so it
    # works with the systemd stage 1 (the only one in nixpkgs 26.11), on x86
    # (BIOS) and Arm (UEFI) alike: both use the GPT layout below, root last.
    #   - boot.growPartition: the unit growpart.service (wanted by -.mount,
    #     before systemd-growfs-root.service) resolves fileSystems."/".device
    #     (disko's /dev/disk/by-partlabel/disk-main-root) to its disk and
    #     partition number (sda and 3, nvme0n1 and 3) and runs cloud-utils'
    #     growpart on them, online, counting its "nothing to grow" exit 1 as
    #     success (grow-partition.nix; growpart edits the GPT with sgdisk, on its
    #     wrapper's PATH: pkgs/by-name/cl/cloud-utils/package.nix, guestDeps).
    #     nixpkgs' own test, nixos/tests/grow-partition.nix, boots EFI, legacy
    #     and legacy+gpt disk images grown by 32M and asserts CHANGED, then
    #     NOCHANGE on a second run.
    #   - autoResize: adds x-systemd.growfs to the mount options
    #     (nixos/modules/tasks/filesystems.nix), so systemd's fstab generator
    #     runs systemd-growfs-root.service, which grows the mounted ext4 to its
    #     partition (systemd-growfs(8)).
    # This replaces nix/modules/grow-root.nix, which did both by hand.
    boot.growPartition = growPartitionOn;
    fileSystems."/".autoResize = true;

    # Arm machines have no BIOS: install the EFI target only. The EF02 partition
    # stays unused there, which is what lets x86 and Arm share one layout.
    boot.loader.grub.devices = lib.mkIf isArm (lib.mkForce [ "nodev" ]);

    disko.devices.disk.main = {
      type = "disk";
      inherit device;
      content = {
        type = "gpt";
        partitions = {
          bios = {
            size = "1M";
            type = "EF02";
          };
          esp = {
            size = "512M";
            type = "EF00";
            content = {
              type = "filesystem";
              format = "vfat";
              mountpoint = "/boot";
              mountOptions = [ "umask=0077" ];
            };
          };
          root = {
            size = "100%";
            content = {
              type = "filesystem";
              format = "ext4";
              mountpoint = "/";
            };
          };
        };
      };
    };
  };
}
