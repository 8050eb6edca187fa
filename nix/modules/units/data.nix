# Data, not a module (no nixpkgs): the data volume's mounts and the unit that
# makes their sources, for a list of state directories. nix/modules/data.nix
# builds fileSystems and systemd.services.blog-data-dirs from it; the test
# systems (tests/integration/harness/closures.nix) render the same /etc/fstab
# lines and unit file from it, which a real systemd then mounts
# (systemd-fstab-generator) on the test targets. Why each option is what it
# is: nix/modules/data.nix.
let
  label = "blog-data";
  mountPoint = "/data";
  prepareUnit = "blog-data-dirs";
  sourceOf = dir: "${mountPoint}${dir}";
in
{
  inherit label mountPoint prepareUnit sourceOf;

  # fileSystems entries (NixOS's options: device, fsType, options, neededForBoot).
  fileSystems =
    directories:
    {
      ${mountPoint} = {
        device = "/dev/disk/by-label/${label}";
        fsType = "ext4";
        options = [
          "nofail"
          "x-systemd.device-timeout=30s"
          "x-systemd.growfs"
        ];
        neededForBoot = false;
      };
    }
    // builtins.listToAttrs (
      map (dir: {
        name = dir;
        value = {
          device = sourceOf dir;
          fsType = "none";
          options = [
            "bind"
            "nofail"
            "x-systemd.requires=${prepareUnit}.service"
          ];
        };
      }) directories
    );

  # systemd.services.${prepareUnit} (NixOS's option names).
  prepareService = directories: {
    description = "State directories on the data volume";
    unitConfig.RequiresMountsFor = [ mountPoint ];
    path = [
      "coreutils"
      "util-linux"
    ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
    };
    environment = {
      DATA_MOUNT = mountPoint;
      # Absolute paths without whitespace (nix/modules/data.nix asserts it).
      DATA_DIRECTORIES = builtins.concatStringsSep " " directories;
    };
    script = ./data-dirs.sh;
  };
}
