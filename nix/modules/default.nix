# Everything a blog host is made of. A host file imports this and sets the
# facts in config.blog.host; nothing below holds per-host data.
{ inputs, ... }:
{
  imports = [
    inputs.disko.nixosModules.disko
    ./host-facts.nix
    ./secrets.nix
    ./hardware-hetzner.nix
    ./disk.nix
    ./data.nix
    ./backup.nix
    ./network.nix
    ./access.nix
    ./backend.nix
    ./web.nix
    ./upkeep.nix
  ];
}
