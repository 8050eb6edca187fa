# Hetzner Cloud virtual hardware: a QEMU/KVM guest with virtio disks and NICs.
# x86 servers boot by legacy BIOS, Arm (cax) servers by UEFI; GRUB is installed
# for both so one disk layout (nix/modules/disk.nix) serves both.
{
  config,
  lib,
  modulesPath,
  ...
}:
let
  isArm = config.blog.host.system == "aarch64-linux";
in
{
  imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];

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

  # Arm servers have no BIOS: install the EFI target only. The EF02 partition
  # stays unused there, which is what lets x86 and Arm share one layout.
  boot.loader.grub.devices = lib.mkIf isArm (lib.mkForce [ "nodev" ]);

  # On Arm the kernel console defaults to serial; Hetzner's web console shows
  # the display, so send boot messages there too.
  boot.kernelParams = lib.mkIf isArm [ "console=tty" ];

  # The QEMU guest agent, as srvos enables it for Hetzner Cloud
  # (nixos/hardware/hetzner-cloud/default.nix: "Needed by the Hetzner Cloud
  # password reset feature", commit 2888a22 "enable qemu-agent for password
  # resets"). That is the one use of it on Hetzner Cloud a source we read
  # names, and it cannot work here, by design: users are immutable and root
  # has no password. It stays on as in srvos (mkDefault: a host file may turn
  # it off); nothing in this repository relies on it.
  services.qemuGuest.enable = lib.mkDefault true;
}
