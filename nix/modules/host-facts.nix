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
  };
}
