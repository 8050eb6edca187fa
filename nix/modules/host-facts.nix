# The facts that make one blog host different from another. They are set in
# the host file (nix/hosts/*.nix) and read by every other module; the stack
# reads them too, with `nix eval ... --apply 'c: { host = c.config.blog.host; ... }'`,
# so keep them plain data (no functions, no derivations).
{ lib, ... }:
{
  options.blog.host = {
    domain = lib.mkOption {
      type = lib.types.strMatching "([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]([a-z0-9-]*[a-z0-9])?";
      example = "blog.example.org";
      description = ''
        Fully qualified domain name the blog is served under, lower case,
        without a trailing dot. It names the nginx virtual host and the
        ACME certificate.
      '';
    };

    acmeEmail = lib.mkOption {
      type = lib.types.strMatching "[^@[:space:]]+@[^@[:space:]]+";
      example = "admin@example.org";
      description = "E-mail address registered with the ACME (Let's Encrypt) account.";
    };

    adminSshKeys = lib.mkOption {
      type = lib.types.listOf lib.types.singleLineStr;
      example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... admin@laptop" ];
      description = ''
        OpenSSH public key lines allowed to log in as root. They are the only
        way in: password and keyboard-interactive logins are off.
      '';
    };

    system = lib.mkOption {
      type = lib.types.enum [
        "x86_64-linux"
        "aarch64-linux"
      ];
      example = "aarch64-linux";
      description = ''
        Platform of the server: `x86_64-linux` for Hetzner cx/cpx/ccx types,
        `aarch64-linux` for cax types.
      '';
    };

    platform = lib.mkOption {
      type = lib.types.enum [
        "hetzner-cloud"
        "generic"
      ];
      default = "hetzner-cloud";
      example = "generic";
      description = ''
        What the host runs on. `hetzner-cloud`: a Hetzner Cloud server (its
        disk layout, virtio guest, IPv6 from the metadata service, cloud-init),
        what the stack's `host: hetzner` creates. `generic`: any other machine
        (`host: existing`); the host file imports that machine's own hardware
        configuration, or names `disk` for nixos-anywhere to install on.
      '';
    };

    disk = lib.mkOption {
      type = lib.types.nullOr (lib.types.strMatching "/dev/disk/by-(id|path|uuid|partuuid|diskseq)/[^/[:space:]]+");
      default = null;
      example = "/dev/disk/by-id/nvme-SAMSUNG_MZVL21T0HCLR-00B00_S676NF0R123456";
      description = ''
        The disk nixos-anywhere erases and installs the flake's layout on
        (nix/modules/disk.nix), by a name that stays the same across reboots,
        never /dev/sdX. `null`: /dev/sda on Hetzner Cloud; on a generic host,
        no layout from this flake (the host file imports the machine's own
        hardware configuration).
      '';
    };
  };
}
