# Data, not a module (no nixpkgs): the boot unit that settles a delivery of
# host secrets a reboot cut short. nix/modules/secrets.nix builds
# systemd.services.blog-secrets-resolve from it, and the test systems
# (tests/integration/harness/closures.nix) render the same unit file from it
# and run the same script on a real systemd. The option names are NixOS's
# systemd.services.<name> options; `path` names nixpkgs packages; `script` is a
# file, run by bash -e as NixOS runs a unit's script.
#
# The deploy records the boot it delivered in (/proc/sys/kernel/random/boot_id,
# in the pending record's boot_id=): the script acts only on a delivery of an
# earlier boot, never on the running deploy's. That matters because
# switch-to-configuration starts every active target at the end of an
# activation, sysinit.target included, and a start of sysinit.target starts
# every unit it wants that is not active (nixpkgs switch-to-configuration-ng,
# main.rs: "Cause all active target units to be restarted below"). The unit
# also stays active after its run (RemainAfterExit) and a new system never
# restarts it (restartIfChanged = false): it runs once per boot, at boot. It
# has no ConditionPathExists= on the record any more: a condition that fails at
# boot leaves the unit inactive, and the next start of sysinit.target would
# start it again; the script itself checks for the record.
let
  names = import ../secret-names.nix;
in
{
  description = "Settle host secrets left undecided by a deploy";
  wantedBy = [ "sysinit.target" ];
  before = [
    "sysinit.target"
    "shutdown.target"
  ];
  after = [ "local-fs.target" ];
  conflicts = [ "shutdown.target" ];
  unitConfig.DefaultDependencies = false;
  serviceConfig = {
    Type = "oneshot";
    RemainAfterExit = true;
  };
  restartIfChanged = false;
  environment = {
    SECRETS_STORE = names.store;
    SECRETS_LINK = names.directory;
  };
  path = [
    "coreutils"
    "gnused"
  ];
  script = ./secrets-resolve.sh;
}
