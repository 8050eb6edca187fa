# Networking without per-server data in the closure.
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
# v1 document that afterburn's Hetzner provider also reads: a "physical"
# entry whose "static" subnet with ipv6: true carries address and gateway)
# and adds them as a runtime drop-in of that unit (systemd.network(5): drop-ins
# in /run/systemd/network/<unit>.network.d/ merge into the unit), then has
# networkd re-read it. Nothing is written under /etc; a new server (a new
# address) needs no new closure. The deploy's and the install's checks ask
# the site and SSH through the published AAAA address, so a host whose IPv6
# did not come up is noticed at once.
{ config, lib, pkgs, ... }:
let
  uplink = "10-uplink";
  metadata = "http://169.254.169.254/hetzner/v1/metadata/network-config";
  hetznerIpv6 = pkgs.writeShellApplication {
    name = "hetzner-ipv6";
    runtimeInputs = [
      pkgs.coreutils
      pkgs.curl
      pkgs.yq-go
      pkgs.systemd
    ];
    text = ''
      config=$(curl --silent --show-error --fail --max-time 10 --retry 6 --retry-connrefused ${metadata})
      subnet='.config[] | select(.type == "physical") | .subnets[] | select(.ipv6 == true)'
      address=$(yq "$subnet | .address" <<<"$config" | head -n 1)
      gateway=$(yq "$subnet | .gateway // \"fe80::1\"" <<<"$config" | head -n 1)
      if [[ $address != *:*/* ]]; then
        echo "no IPv6 address in the metadata's network-config: $config" >&2
        exit 1
      fi
      dropin=/run/systemd/network/${uplink}.network.d
      mkdir -p "$dropin"
      printf '[Network]\nAddress=%s\n\n[Route]\nGateway=%s\nGatewayOnLink=yes\n' "$address" "$gateway" >"$dropin/hetzner-ipv6.conf.tmp"
      mv "$dropin/hetzner-ipv6.conf.tmp" "$dropin/hetzner-ipv6.conf"
      networkctl reload
      networkctl reconfigure eth0
      echo "IPv6: $address via $gateway"
    '';
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
            !(builtins.elem "ssh" modules);
          message = "cloud-init's ssh module must stay off on a Hetzner host: the server's user data holds the stock image's bootstrap host key, which it would install over the host's own (nix/modules/network.nix).";
        }
      ];
      networking.useNetworkd = true;
      # Hetzner's metadata names the uplink eth0; keep the kernel's names.
      networking.usePredictableInterfaceNames = lib.mkDefault false;
      # Any other NIC (a private network) gets NixOS' 99-ethernet-default-dhcp.
      networking.useDHCP = true;

      systemd.network.networks.${uplink} = {
        matchConfig.Name = "eth0";
        networkConfig.DHCP = "ipv4";
      };

      systemd.services.hetzner-ipv6 = {
        description = "IPv6 address of the uplink, from the Hetzner Cloud metadata service";
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
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

      services.cloud-init = {
        enable = true;
        # The network is configured above, not by cloud-init: no networkd units
        # from cloud-init (network.enable = false) and no network rendering at
        # all (cloud.cfg `network: {config: disabled}`).
        network.enable = false;
        settings = {
          network.config = "disabled";
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
          # authorized_keys, no password settings. The server's user data
          # carries the throwaway host key the stock image presented before the
          # install (`ssh_keys`, src/server.ts): the ssh module would write it
          # over the host's own key whatever the two settings above say
          # (cc_ssh.py writes `ssh_keys` before it looks at them), so it must
          # stay out; the assertion below keeps it out.
          cloud_config_modules = [
            "disk_setup"
            "mounts"
            "timezone"
            "runcmd"
          ];
        };
      };
    })
  ];
}
