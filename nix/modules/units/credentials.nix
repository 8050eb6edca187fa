# Data, not a module (no nixpkgs): how a unit takes host secrets as systemd
# credentials, <name>:<path> for LoadCredential= (systemd.exec(5)): systemd
# copies each root-only file into the unit's private
# $CREDENTIALS_DIRECTORY/<name> at every start. The backend module
# (nix/modules/backend.nix) takes its secrets this way, and so do the test
# systems' services (tests/integration/harness/closures.nix).
let
  names = import ../secret-names.nix;
in
{
  loadCredential = secrets: map (name: "${name}:${names.directory}/${name}") secrets;

  # /etc/blog/secret-units, which tells the deploy what to restart when a
  # secret changes (scripts/target-shim.sh): one line per secret, sorted by
  # name, "<name> [<unit> ...]". restartUnits: name -> units.
  secretUnitsText =
    restartUnits:
    builtins.concatStringsSep "" (
      map (name: builtins.concatStringsSep " " ([ name ] ++ restartUnits.${name}) + "\n") (
        builtins.attrNames restartUnits
      )
    );
}
