# The example blog host on a Hetzner cax (Arm) server: the same facts, another platform.
{ lib, ... }:
{
  imports = [ ./blog.nix ];

  blog.host.system = lib.mkForce "aarch64-linux";
}
