# Grows the root partition and its ext4 file system to the whole disk at boot.
# A larger Hetzner server type grows the disk (change_type with upgrade_disk),
# but nothing inside the server follows: the partition disko made at install
# keeps its size until something grows it. This oneshot does, online, on
# every boot, and does nothing when there is nothing to grow.
#
# Not boot.growPartition: it runs in the scripted stage 1 only (nixpkgs
# nixos/modules/system/boot/grow-partition.nix asserts
# !boot.initrd.systemd.enable). Not cloud-init's growpart/resizefs modules:
# the path NixOS gives cloud-init (nixos/modules/services/system/cloud-init.nix:
# cloud-init, iproute2, net-tools, openssh, shadow, util-linux, busybox, fs
# tools) has no growpart, and cloud-init's "auto" mode then skips silently.
# Only where this flake laid out the disk (nix/modules/disk.nix): ext4 root.
{ config, lib, pkgs, ... }:
{
  systemd.services.grow-root = lib.mkIf (config.blog.host.platform == "hetzner-cloud" || config.blog.host.disk != null) {
    description = "Grow the root partition and file system to fill the disk";
    wantedBy = [ "multi-user.target" ];
    after = [ "local-fs.target" ];
    # cloud-utils.guest: growpart wrapped with what it calls (e2fsprogs, gptfdisk,
    # gawk, gnused, util-linux; pkgs/by-name/cl/cloud-utils/package.nix).
    path = [
      pkgs.cloud-utils.guest
      pkgs.util-linux
      pkgs.e2fsprogs
    ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
    };
    script = ''
      root=$(findmnt --noheadings --nofsroot --output SOURCE /)
      disk=/dev/$(lsblk --noheadings --nodeps --output PKNAME "$root")
      part=$(cat "/sys/class/block/$(basename "$(readlink -f "$root")")/partition")
      # growpart: 0 grown, 1 nothing to grow (NOCHANGE), 2 error.
      rc=0
      growpart "$disk" "$part" || rc=$?
      if [ "$rc" -gt 1 ]; then
        echo "growpart $disk $part failed (exit $rc)" >&2
        exit "$rc"
      fi
      # Idempotent: says "Nothing to do!" when the file system fills the partition.
      resize2fs "$root"
    '';
  };
}
