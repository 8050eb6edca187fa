# The example blog host: only host facts, plus the shared modules.
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
    # for nixos-anywhere to install on (see the README, "Any SSH host").
    platform = "hetzner-cloud";
    disk = null;
  };
}
