# Networking without per-server data in the closure, and without cloud-init.
#
# IPv4 comes from Hetzner's DHCP. IPv6 is a static /64 that Hetzner assigns
# per server and publishes in its metadata service, not by DHCP
# (canonical/cloud-init#6862; elitak/nixos-infect#106: "ipv4 address is
# provided through DHCP, but ipv6 is static"), so the closure cannot carry it
# and DHCP cannot fetch it. Why a unit of our own rather than cloud-init's
# network config:
#   - cloud-init's Hetzner datasource reads the address in `init --local`,
#     which needs a DHCP client inside cloud-init's own unit; on NixOS that
#     broke once already (nixpkgs#215571, dhclient's removal) and works only
#     while busybox's udhcpc stays on that unit's PATH (nixpkgs PR 226216,
#     srvos PR 137);
#   - cloud-init 25.3's Hetzner datasource asks DHCPv6 for an address Hetzner
#     only publishes in its metadata and fails with a traceback
#     (canonical/cloud-init#6862);
#   - srvos' own Hetzner Cloud guide still sets the address by hand
#     (docs/installation/hetzner_cloud.md: "FIXME: Hetzner Cloud doesn't
#     provide us with that configuration"), as do public networkd configs
#     for Hetzner Cloud (DHCP=ipv4, Address=<v6>/64, Gateway=fe80::1; e.g.
#     markus289.github.io, _notes/hetzner.md), and Flatcar's workaround
#     (flatcar/Flatcar#1968) reads it from the metadata service at boot.
# So: the uplink's networkd unit is declared here (DHCP for IPv4), and a boot
# unit reads the IPv6 address and gateway from
# http://169.254.169.254/hetzner/v1/metadata/network-config (the cloud-init
# v1 document that afterburn's Hetzner provider also reads) and gives them to
# networkd as a runtime drop-in of that unit (systemd.network(5): drop-ins in
# /run/systemd/network/<unit>.network.d/ merge into the unit), without ever
# resetting the link under an SSH session (nix/modules/hetzner-ipv6.sh says
# how). Nothing is written under /etc; a new server (a new address) needs no
# new closure. The deploy's and the install's checks ask the site and SSH
# through the published AAAA address, so a host whose IPv6 did not come up is
# noticed at once.
#
# cloud-init is not enabled: nothing on the host needs it, and the user data the
# stack sends is for the stock image only (its throwaway bootstrap host key,
# src/server.ts), which cloud-init's ssh module would install over the host's
# own key (the assertion below keeps that module off should a host file turn
# cloud-init on). The host name is NixOS' (networking.hostName, /etc/hostname
# from the store), SSH host keys come from nixos-anywhere (--extra-files) and
# root's keys from config.blog.host.adminSshKeys, the root partition grows with
# boot.growPartition (nix/modules/disk.nix), and there are no disks to set up
# or mounts to add from user data (the data volume's mount is declared in
# nix/modules/data.nix). What it did run cost a slower boot (sshd waited for
# it), and its known failures on Hetzner (above) left a failed unit behind.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  uplinkNetwork = "10-uplink";
  uplink = "eth0";
  hetznerIpv6 = pkgs.writeShellApplication {
    name = "hetzner-ipv6";
    runtimeInputs = [
      pkgs.coreutils
      pkgs.curl
      pkgs.iproute2
      pkgs.yq-go
      config.systemd.package
    ];
    text = builtins.readFile ./hetzner-ipv6.sh;
  };
in
{
  config = lib.mkMerge [
    {
      networking.hostName = lib.mkDefault "blog";

      networking.firewall = {
        enable = true;
        # Only SSH (on the port sshd listens on), HTTP (ACME HTTP-01 and the
        # redirect) and HTTPS. Everything else is dropped (NixOS' default for
        # refused packets).
        allowedTCPPorts = lib.mkForce (
          config.services.openssh.ports
          ++ [
            80
            443
          ]
        );
        allowedUDPPorts = lib.mkForce [ ];
      };
    }

    # A Hetzner Cloud server. A generic machine keeps the network configuration
    # its own hardware configuration gives it.
    (lib.mkIf (config.blog.host.platform == "hetzner-cloud") {
      assertions = [
        {
          assertion =
            let
              settings = config.services.cloud-init.settings;
              modules = (settings.cloud_init_modules or [ ]) ++ (settings.cloud_config_modules or [ ]) ++ (settings.cloud_final_modules or [ ]);
            in
            !config.services.cloud-init.enable || !(builtins.elem "ssh" modules);
          message = "cloud-init (off here) must run without its ssh module on a Hetzner host if a host file turns it on: the server's user data holds the stock image's bootstrap host key, which that module would install over the host's own (nix/modules/network.nix).";
        }
      ];
      networking.useNetworkd = true;
      # Hetzner's metadata names the uplink eth0; keep the kernel's names.
      networking.usePredictableInterfaceNames = lib.mkDefault false;
      # Any other NIC (a private network) gets NixOS' 99-ethernet-default-dhcp.
      networking.useDHCP = true;

      systemd.network.networks.${uplinkNetwork} = {
        matchConfig.Name = uplink;
        networkConfig.DHCP = "ipv4";
      };

      systemd.services.hetzner-ipv6 = {
        description = "IPv6 address of the uplink, from the Hetzner Cloud metadata service";
        # At boot: once the uplink has its IPv4 address (the metadata service
        # answers through it), and before sshd serves anyone and anything that
        # waits for network-online.target starts (the ACME order: Let's Encrypt
        # tries the AAAA record first).
        wantedBy = [
          "multi-user.target"
          "network-online.target"
        ];
        wants = [ "systemd-networkd-wait-online.service" ];
        after = [ "systemd-networkd-wait-online.service" ];
        before = [
          "network-online.target"
          "sshd.service"
        ];
        # Never restarted by a deploy, whether its unit changed or not (a
        # nixpkgs update changes its store path): a changed unit takes effect
        # at the next boot. It stays active once done (RemainAfterExit), so the
        # targets an activation starts do not run it again either.
        restartIfChanged = false;
        environment = {
          METADATA_URL = "http://169.254.169.254/hetzner/v1/metadata/network-config";
          UPLINK = uplink;
          UPLINK_NETWORK = uplinkNetwork;
          WAIT_ONLINE = "${config.systemd.package}/lib/systemd/systemd-networkd-wait-online";
        };
        # Keep trying until the metadata service answers (systemd's default
        # start limit would give up after 5 quick failures).
        unitConfig.StartLimitIntervalSec = 0;
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          Restart = "on-failure";
          RestartSec = 10;
          ExecStart = lib.getExe hetznerIpv6;
        };
      };
    })
  ];
}
