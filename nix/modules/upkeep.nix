# Keeping the host small and traceable without a person logging in:
# bounded store, bounded journal, bounded /boot, and the flake revision it runs.
{ config, inputs, ... }:
let
  # Generations of the system profile kept by the weekly clean-up.
  # `nix-env --delete-generations +N` keeps the current generation, the N-1
  # before it and any newer one (after a rollback), so the current and the
  # previous generation (the rollback target) always survive.
  keepGenerations = 3;
in
{
  nix.gc = {
    automatic = true;
    dates = "weekly";
    randomizedDelaySec = "1h";
    # No --delete-older-than: by age it could remove the only rollback target
    # of a host that has not been deployed for a while. Old generations are
    # pruned by count in preStart below; the collector then only frees what
    # no generation references.
    options = "";
  };
  systemd.services.nix-gc.preStart = ''
    ${config.nix.package}/bin/nix-env --profile /nix/var/nix/profiles/system \
      --delete-generations +${toString keepGenerations}
  '';

  nix.optimise = {
    automatic = true;
    dates = [ "weekly" ];
  };

  services.journald.extraConfig = ''
    SystemMaxUse=500M
    MaxRetentionSec=1month
  '';

  # The flake's git revision, when built from a clean tree (null otherwise).
  system.configurationRevision = inputs.self.rev or null;

  system.stateVersion = "26.05";
}
