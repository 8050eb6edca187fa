# Networking without per-server data in the closure.
# IPv4 comes from Hetzner's DHCP. IPv6 (a static /64 Hetzner assigns per
# server) comes from the metadata service through cloud-init's Hetzner
# datasource, which writes a systemd-networkd unit for the uplink at boot.
{ lib, ... }:
{
  networking.hostName = lib.mkDefault "blog";

  networking.useNetworkd = true;
  # Hetzner's metadata names the uplink eth0; keep the kernel's names so
  # cloud-init's networkd unit matches without renaming links at boot.
  networking.usePredictableInterfaceNames = lib.mkDefault false;
  # Fallback: NixOS' 99-ethernet-default-dhcp unit gives every NIC DHCP when
  # cloud-init has written nothing (its 10-cloud-init-*.network sorts first).
  networking.useDHCP = true;

  services.cloud-init = {
    enable = true;
    # Let cloud-init render the metadata's network config for networkd.
    network.enable = true;
    settings = {
      datasource_list = [ "Hetzner" ];
      # The host name is NixOS' (/etc/hostname is a read-only store link).
      preserve_hostname = true;
      # SSH belongs to NixOS: the host key is installed by nixos-anywhere
      # (--extra-files) and pinned by the stack, and root's keys come from
      # config.blog.host.adminSshKeys. Never delete or generate host keys.
      ssh_deletekeys = false;
      ssh_genkeytypes = [ ];
      # Leave out cloud-init's "ssh", "ssh-import-id" and "set-passwords"
      # modules: no host keys, no Hetzner project keys in root's
      # authorized_keys, no password settings. (The two settings above
      # still hold should someone add "ssh" back.)
      cloud_config_modules = [
        "disk_setup"
        "mounts"
        "timezone"
        "runcmd"
      ];
    };
  };

  networking.firewall = {
    enable = true;
    # Only SSH, HTTP (ACME HTTP-01 and the redirect) and HTTPS. Everything
    # else is dropped (NixOS' default for refused packets).
    allowedTCPPorts = lib.mkForce [
      22
      80
      443
    ];
    allowedUDPPorts = lib.mkForce [ ];
  };
}
