# Who gets in, and how: root over SSH with the admin keys from the host facts,
# nothing else. No passwords exist on this host.
{ config, ... }:
{
  services.openssh = {
    enable = true;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password";
      # A deployer that vanished without closing its connection (a laptop
      # lid, a lost network) is dropped after 4 unanswered probes 15 s apart:
      # its session ends, and with it the deploy lock it held on this host
      # (scripts/target-shim.sh), so the next deploy need not wait for TCP.
      ClientAliveInterval = 15;
      ClientAliveCountMax = 4;
    };
    # Only keys declared here count; a stray ~/.ssh/authorized_keys does not.
    authorizedKeysInHomedir = false;
    # The stack pins this key: nixos-anywhere installs it with --extra-files,
    # so sshd must serve it and only it (nothing generates an RSA key).
    hostKeys = [
      {
        type = "ed25519";
        path = "/etc/ssh/ssh_host_ed25519_key";
      }
    ];
  };

  users.mutableUsers = false;
  # Users come only from this configuration. root keeps NixOS' locked
  # password ("!"), so the account can only be entered with a key.
  users.users.root.openssh.authorizedKeys.keys = config.blog.host.adminSshKeys;

  nix.settings = {
    # Deploys copy closures and switch as root over SSH.
    trusted-users = [ "root" ];
    experimental-features = [
      "nix-command"
      "flakes"
    ];
  };
}
