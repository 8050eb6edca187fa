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
{ config, lib, ... }:
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
