# Hetzner Cloud virtual hardware: a QEMU/KVM guest with virtio disks and NICs.
# x86 servers boot by legacy BIOS, Arm (cax) servers by UEFI; the boot loader
# for both is in nix/modules/disk.nix, with the layout. Only for
# blog.host.platform = "hetzner-cloud"; the virtio drivers of the qemu-guest
# profile (an import cannot depend on config) only add initrd modules.
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

  config = lib.mkIf (config.blog.host.platform == "hetzner-cloud") {
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
  };
}
