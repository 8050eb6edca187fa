# The example blog host on a Hetzner cax (Arm) server: the same facts, another
# platform. It inherits everything else from blog.nix, its example secret
# (services.blog-backend.secrets = [ "backendApiKey" ]) included.
{ lib, ... }:
{
  imports = [ ./blog.nix ];

  blog.host.system = lib.mkForce "aarch64-linux";
}
