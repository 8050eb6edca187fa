# Disk layout and boot loader, applied by disko when nixos-anywhere installs
# the host: on a Hetzner Cloud server (the one disk Hetzner gives it, /dev/sda,
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
  device = if facts.disk != null then facts.disk else "/dev/sda";
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
