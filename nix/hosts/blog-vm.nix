# The example host (hosts/blog.nix: the same domain, keys, services and
# secrets) as a local QEMU VM, to try a whole deploy before paying for a
# server: `nix run ./nix#vm` starts it, and a stack with `host: existing`,
# `dns: none` and `nixosConfiguration: blog-vm` deploys to it (docs/operations.md,
# "Try it in a local VM"). x86_64-linux with KVM; not built in this repository's
# CI (it needs nixpkgs).
#
# The configuration imports nixpkgs' qemu-vm.nix itself (not through
# virtualisation.vmVariant), so the system the stack deploys into the VM is the
# system the VM boots: a deploy switches within one configuration, fileSystems
# and all. Options as nixos/modules/virtualisation/qemu-vm.nix declares them
# (NixOS/nixpkgs, read at 00008e8eb762c5def2670c20231de50db9bb75b3):
# forwardPorts entries { from, proto, host.address, host.port, guest.port },
# memorySize (MiB), graphics, writableStoreUseTmpfs; diskSize (MiB) from
# disk-size-option.nix. The VM runner is system.build.vm, whose
# meta.mainProgram is run-<system.name>-vm.
{ lib, modulesPath, ... }:
{
  imports = [
    ./blog.nix
    "${modulesPath}/virtualisation/qemu-vm.nix"
  ];

  # A machine of yours, not a Hetzner server: no Hetzner disk layout, boot
  # loader or metadata network (modules/hardware-hetzner.nix, disk.nix, network.nix).
  blog.host.platform = lib.mkForce "generic";

  system.name = "blog-vm";

  virtualisation = {
    memorySize = 2048;
    diskSize = 8192;
    graphics = false;
    # What a deploy copies in lands on the VM's disk image, not in its memory.
    writableStoreUseTmpfs = false;
    # localhost:2222 is the VM's sshd; 80 and 443 are its site, on the ports
    # the deploy's health check asks (https://<domain>/ through hostIpv4).
    # Ports below 1024: start the VM as root, or lower
    # net.ipv4.ip_unprivileged_port_start.
    forwardPorts = [
      {
        from = "host";
        host.address = "127.0.0.1";
        host.port = 2222;
        guest.port = 22;
      }
      {
        from = "host";
        host.address = "127.0.0.1";
        host.port = 80;
        guest.port = 80;
      }
      {
        from = "host";
        host.address = "127.0.0.1";
        host.port = 443;
        guest.port = 443;
      }
    ];
  };

  # The VM boots its kernel directly (qemu-vm.nix's directBoot): there is no
  # boot loader to install, and a deploy's `switch-to-configuration boot`
  # has nothing to write. A restart of the VM boots the system it was built
  # with, not the last one deployed.
  boot.loader.grub.enable = false;

  # The VM's NIC gets its address from QEMU's user network by DHCP.
  networking.useDHCP = lib.mkDefault true;
}
