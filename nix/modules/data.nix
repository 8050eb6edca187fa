# State that outlives the server: with blog.host.dataVolume, the services'
# state directories live on a separate disk, a Hetzner Volume the stack
# attaches, and survive a new server.
#
# The volume carries an ext4 file system labelled `blog-data` (Hetzner formats
# a new volume; the stack sets the label and never formats). It is mounted at
# /data, and each directory of blog.data.directories is bind-mounted from
# /data/<same path>, the way nix-community/impermanence does it (nixos.nix:
# a bind mount per directory, its source created first). Differences, because
# /data is a late, optional mount rather than one mounted in the initrd:
#   - /data is `nofail` with a bounded device timeout: a missing volume never
#     holds up the boot, and the host stays reachable over SSH;
#   - the bind mounts are `nofail` too, and each service owning a directory
#     gets RequiresMountsFor= on it: without the volume that service does not
#     start at all. State written to the root disk and later hidden under the
#     mount (a split brain) is worse than a stopped service;
#   - the sources on the volume are made by a oneshot ordered after /data is
#     mounted and before the bind mounts (impermanence does this in an
#     activation script, which runs before the volume is mounted here).
#
# Not moved: state that already exists on the root disk when dataVolume is
# turned on. It stays there, hidden under the bind mount; copy it to
# /data/<path> by hand first if it matters.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.blog.data;
  enabled = config.blog.host.dataVolume;

  # The mounts and the unit that makes their sources: units/data.nix (data,
  # which the test systems render too: their fstab and unit file come from
  # the same entries). Why each option is what it is, below.
  units = import ./units/data.nix;
  inherit (units) mountPoint prepareUnit;

  directories = builtins.attrNames cfg.directories;

  # The volume (fstab options read by systemd-fstab-generator, systemd.mount(5)):
  # nofail: local-fs.target only wants the mount and is not ordered after it,
  # so the boot goes on without the volume; the device timeout bounds the wait
  # for it (systemd's default is 90 s). A volume labelled later is mounted when
  # a unit that needs it is started (or at the next boot). x-systemd.growfs: a
  # volume grown at Hetzner (volumeSize) grows its file system when mounted
  # (systemd-growfs), should the online grow of scripts/data-volume.sh attach
  # not have done it. neededForBoot = false: mounted by systemd after the
  # initrd, never in it: a missing volume must not stop the boot
  # (nixos/modules/system/boot/stage-1.nix).
  #
  # The bind mounts: a bind mount requires the mounts its source path needs
  # (systemd src/core/mount.c, mount_add_mount_dependencies: RequiresMountsFor=
  # on What=), so it fails, and the services needing it with it, when /data is
  # not mounted. x-systemd.requires= adds Requires= and After= on the unit that
  # makes its source (systemd.mount(5)).
  fileSystems = units.fileSystems directories;

  # The bind sources on the volume, before the bind mounts need them.
  # systemd would create a missing source itself (systemd.mount(5), What=),
  # but with mode 0755 for it and its parents: /data/var/lib/private must be
  # 0700 like /var/lib/private. The root-disk side matters too: a mount
  # creates its missing mount point's parents 0755 (DirectoryMode=), and
  # systemd refuses to start a DynamicUser= service whose /var/lib/private is
  # more open than 0700 (src/core/exec-invoke.c creates it with
  # mkdir_safe_label(0700), and src/basic/mkdir.c refuses an existing one
  # "that is too permissive"). Each directory on the volume takes the mode and
  # owner of its root-disk counterpart where that exists, else 0755 root;
  # systemd then chowns the innermost one for the service at its start
  # (StateDirectory=), through the bind mount (units/data-dirs.sh).
  prepareService =
    let
      service = units.prepareService directories;
    in
    {
      inherit (service)
        description
        unitConfig
        serviceConfig
        environment
        ;
      path = map (name: pkgs.${name}) service.path;
      script = builtins.readFile service.script;
    };
in
{
  options.blog.data = {
    directories = lib.mkOption {
      type = lib.types.attrsOf (
        lib.types.submodule {
          options.services = lib.mkOption {
            type = lib.types.listOf lib.types.str;
            default = [ ];
            example = [ "blog-backend" ];
            description = ''
              Services (names under `systemd.services`, without `.service`)
              that own this directory. They get `RequiresMountsFor=` on it:
              without the volume they do not start.
            '';
          };
        }
      );
      default = { };
      example = lib.literalExpression ''
        {
          "/var/lib/private/blog-backend".services = [ "blog-backend" ];
        }
      '';
      description = ''
        Absolute paths of state directories kept on the data volume when
        `blog.host.dataVolume` is true, each bind-mounted from
        `/data/<path>`. The backend module adds its own,
        `/var/lib/private/blog-backend` (DynamicUser= puts StateDirectory=
        there). A directory of a DynamicUser= service must be named below
        /var/lib/private.

        /var/lib/acme is deliberately not in it: a new server orders its
        certificate again in minutes (the cost: one of Let's Encrypt's 5
        identical certificates a week, and a volume cannot follow a server
        to another location anyway); the ACME units and their tmpfiles rules
        would have to be ordered after a late, optional mount; and nginx
        would then need the volume too, so a missing volume would take down
        the TLS front as well as the backend. With `tls = "cloudflare-origin"`
        there is no ACME state at all.
      '';
    };

    fileSystems = lib.mkOption {
      type = lib.types.attrsOf lib.types.anything;
      internal = true;
      readOnly = true;
      default = if enabled then fileSystems else { };
      defaultText = lib.literalMD "the volume's mount and the bind mounts, when `blog.host.dataVolume`";
      description = ''
        The `fileSystems` entries of the data volume. NixOS VM tests replace
        `fileSystems` wholesale (nixos/modules/virtualisation/qemu-vm.nix:
        `fileSystems = mkVMOverride cfg.fileSystems`), so the VM test merges
        these into `virtualisation.fileSystems`.
      '';
    };
  };

  config = lib.mkIf enabled {
    assertions = map (dir: {
      assertion =
        builtins.match "(/[^/[:space:]]+)+" dir != null
        && dir != mountPoint
        && !(lib.hasPrefix "${mountPoint}/" dir);
      message = "blog.data.directories: `${dir}` must be an absolute path without a trailing slash, outside ${mountPoint}.";
    }) directories;

    fileSystems = cfg.fileSystems;

    systemd.services = lib.mkMerge (
      [ { ${prepareUnit} = prepareService; } ]
      # Each owner waits for its directory's bind mount and fails without it.
      ++ map (
        dir:
        lib.genAttrs cfg.directories.${dir}.services (service: {
          unitConfig.RequiresMountsFor = [ dir ];
        })
      ) directories
    );
  };
}
