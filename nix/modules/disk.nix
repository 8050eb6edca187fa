# Disk layout, applied by disko when nixos-anywhere installs the server.
# GPT on the one disk Hetzner Cloud gives every server (/dev/sda):
#   1M BIOS boot partition (EF02)  for GRUB on x86 (legacy BIOS)
#   512M EFI system partition      mounted at /boot, for Arm (UEFI)
#   the rest                       ext4 root
# disko turns the EF02 partition into boot.loader.grub.devices = [ "/dev/sda" ].
{
  disko.devices.disk.main = {
    type = "disk";
    device = "/dev/sda";
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
}
