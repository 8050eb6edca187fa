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
        disk layout, virtio guest, IPv6 from the metadata service),
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
        never /dev/sdX. `null`: on Hetzner Cloud, the server's own disk
        (x86: `/dev/disk/by-path/pci-0000:06:00.0-scsi-0:0:0:0`, LUN 0 of the
        virtio-scsi controller; Arm: `/dev/sda`, see disk.nix); on a generic
        host, no layout from this flake (the host file imports the machine's
        own hardware configuration).
      '';
    };

    tls = lib.mkOption {
      type = lib.types.enum [
        "acme"
        "cloudflare-origin"
      ];
      default = "acme";
      example = "cloudflare-origin";
      description = ''
        Where nginx's certificate comes from (nix/modules/web.nix). `acme`:
        Let's Encrypt by HTTP-01 on port 80; the DNS records must point at
        the host itself (not proxied). `cloudflare-origin`: the site is
        behind Cloudflare's proxy (SSL mode Full (strict)); nginx serves a
        Cloudflare Origin CA certificate that the stack delivers as the host
        secrets `cloudflareOriginCert` and `cloudflareOriginKey`, takes the
        client address from CF-Connecting-IP for the Cloudflare ranges in
        the secret `cloudflareRealIp`, and orders nothing by ACME.
      '';
    };

    dataVolume = lib.mkOption {
      type = lib.types.bool;
      default = false;
      example = true;
      description = ''
        Whether the services' state lives on a separate disk that outlives
        the server (a Hetzner Volume the stack attaches;
        nix/modules/data.nix): its ext4 file system, labelled `blog-data`, is
        mounted at /data, and the state directories are bind-mounted from
        it. Without the volume the host still boots and answers SSH, and the
        services that keep state there stay stopped. The stack's volume
        configuration must agree with this fact.
      '';
    };
  };
}
