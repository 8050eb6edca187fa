# The example blog host: only host facts and the names of the secrets its
# services take, plus the shared modules.
# Replace the domain, the e-mail and the key before deploying; the stack
# refuses the placeholder key below.
{
  imports = [ ../modules ];

  blog.host = {
    domain = "example.com";
    acmeEmail = "admin@example.com";
    adminSshKeys = [
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA PLACEHOLDER-replace-with-your-own-key"
    ];
    system = "x86_64-linux";
    # A Hetzner Cloud server, laid out on the disk Hetzner gives it. For a
    # machine you have: platform = "generic", and either import its
    # hardware-configuration.nix here or set disk to a /dev/disk/by-id/ path
    # for nixos-anywhere to install on (see docs/configuration.md, "Machine you have").
    platform = "hetzner-cloud";
    disk = null;
    # "cloudflare-origin" when the records are proxied by Cloudflare: nginx
    # then serves the Origin CA certificate the stack delivers as secrets.
    tls = "acme";
    # true: the services' state lives on a Hetzner Volume (label blog-data,
    # mounted at /data) that outlives the server; the stack attaches it.
    dataVolume = false;
  };

  # An example secret: the hello-world backend ignores it; it shows the path.
  # The stack must provide it; the backend reads it at
  # $CREDENTIALS_DIRECTORY/backendApiKey.
  services.blog-backend.secrets = [ "backendApiKey" ];
}
