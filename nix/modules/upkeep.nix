# Keeping the host small and traceable without a person logging in:
# bounded store, bounded journal, bounded /boot, and the flake revision it runs.
{
  config,
  inputs,
  lib,
  pkgs,
  ...
}:
let
  # Generations of the system profile kept by the weekly clean-up.
  # `nix-env --delete-generations +N` keeps the current generation, the N-1
  # before it and any newer one (after a rollback), so the current and the
  # previous generation (the rollback target) always survive.
  keepGenerations = 3;

  # The clean-up itself, a script of its own so that the offline checks can
  # shellcheck it (nix/tests/offline.sh), as writeShellApplication does when
  # it builds.
  gc = pkgs.writeShellApplication {
    name = "blog-gc";
    runtimeInputs = [
      config.nix.package
      pkgs.coreutils
      pkgs.gnused
      pkgs.util-linux
    ];
    text = builtins.readFile ./upkeep-gc.sh;
  };
in
{
  # Not nix.gc: its unit (nixpkgs nixos/modules/services/misc/nix-gc.nix) only
  # runs nix-collect-garbage. The clean-up also has to delete old generations
  # before, rewrite the boot menu after (deleted generations otherwise stay in
  # GRUB's menu until the next boot-loader install, and a stale entry points at
  # a system the collector then deletes), and hold the deploy's lock throughout
  # (nix/modules/upkeep-gc.sh says why).
  systemd.services.blog-gc = {
    description = "Weekly clean-up of old system generations, their boot entries and unreferenced store paths";
    environment = {
      KEEP_GENERATIONS = toString keepGenerations;
      # A deploy holds the lock for minutes; one that takes longer (a build on
      # the host) makes this week's run skip, and the next run catches up.
      LOCK_WAIT = lib.mkDefault "900";
    };
    serviceConfig = {
      Type = "oneshot";
      ExecStart = lib.getExe gc;
    };
  };
  systemd.timers.blog-gc = {
    wantedBy = [ "timers.target" ];
    timerConfig = {
      OnCalendar = "weekly";
      RandomizedDelaySec = "1h";
      # A host that was off at the time runs it at the next boot.
      Persistent = true;
    };
  };

  nix.optimise = {
    automatic = true;
    dates = [ "weekly" ];
  };

  # nixpkgs 26.11 removed services.journald.extraConfig (an evaluation error
  # now) for the freeform services.journald.settings.Journal (NixOS/nixpkgs
  # PR 536538, "nixos/journald: migrate to RFC 42-style settings", whose
  # rl-2611.section.md entry says so).
  services.journald.settings.Journal = {
    SystemMaxUse = "500M";
    MaxRetentionSec = "1month";
  };

  # The flake's git revision, when built from a clean tree (null otherwise).
  system.configurationRevision = inputs.self.rev or null;

  system.stateVersion = "26.05";
}
