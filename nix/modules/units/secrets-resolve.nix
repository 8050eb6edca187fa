# Data, not a module (no nixpkgs): the boot unit that settles a delivery of
# host secrets a reboot cut short. nix/modules/secrets.nix builds
# systemd.services.blog-secrets-resolve from it, and the test systems
# (tests/integration/harness/closures.nix) render the same unit file from it
# and run the same script on a real systemd. The option names are NixOS's
# systemd.services.<name> options; `path` names nixpkgs packages; `script` is a
# file, run by bash -e as NixOS runs a unit's script.
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
  unitConfig = {
    DefaultDependencies = false;
    ConditionPathExists = "${names.store}/pending";
  };
  serviceConfig.Type = "oneshot";
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
