# Host secrets: values that must never enter the Nix store (API keys, a TLS
# private key). A module declares the secrets it needs in blog.secrets; the
# deploy delivers each one to /var/lib/blog-secrets/<name> (root:root 0400,
# the directory 0700) before it activates the system, and restarts the units
# a changed secret lists. Services take them as systemd credentials, never by
# reading that directory themselves:
#
#   serviceConfig.LoadCredential = [ "<name>:${config.blog.secrets.<name>.path}" ];
#
# and read $CREDENTIALS_DIRECTORY/<name> (= /run/credentials/<unit>/<name>),
# a private copy readable by the unit's user only, made at each start
# (systemd.exec(5), LoadCredential=). A running unit keeps the copy it started
# with, hence restartUnits.
#
# The stack reads the declared names with
#   nix eval ...#nixosConfigurations.<host>.config.blog.secrets --apply builtins.attrNames
# and refuses a preview that does not provide one, so blog.secrets stays plain
# data (strings and lists of strings).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  contract = import ./secret-names.nix;
  credentials = import ./units/credentials.nix;
  resolve = import ./units/secrets-resolve.nix;
  cfg = config.blog.secrets;

  # A unit name with its suffix ("blog-backend.service"), no whitespace: the
  # list file below is split on spaces.
  # Backslashes allowed for systemd's escapes ("var-lib-foo\x2dbar.mount").
  unitName = lib.types.strMatching "[-A-Za-z0-9:_.@\\\\]+\\.(service|socket|timer|path|mount|target)";
in
{
  options.blog.secrets = lib.mkOption {
    default = { };
    example = lib.literalExpression ''
      {
        backendApiKey = {
          description = "API key of the backend's upstream service";
          restartUnits = [ "blog-backend.service" ];
        };
      }
    '';
    description = ''
      Secrets this host needs, by name (`${contract.namePattern}`). The deploy
      delivers each to `${contract.directory}/<name>` before activating the
      system; the stack must provide every name declared here.
    '';
    type = lib.types.attrsOf (
      lib.types.submodule (
        { name, ... }:
        {
          options = {
            description = lib.mkOption {
              type = lib.types.str;
              example = "API key of the backend's upstream service";
              description = "What the secret is, for the operator who has to provide it.";
            };

            restartUnits = lib.mkOption {
              type = lib.types.listOf unitName;
              default = [ ];
              example = [ "blog-backend.service" ];
              description = ''
                Units (with their suffix) the deploy restarts when this secret
                changes: a unit reads its credentials only when it starts.
              '';
            };

            path = lib.mkOption {
              type = lib.types.str;
              readOnly = true;
              default = "${contract.directory}/${name}";
              defaultText = lib.literalExpression ''"${contract.directory}/''${name}"'';
              description = "Where the deploy puts the secret; the path for `LoadCredential=`.";
            };
          };
        }
      )
    );
  };

  config = {
    assertions = map (name: {
      assertion = builtins.match contract.namePattern name != null;
      message = "blog.secrets.${name}: a secret's name must match ^${contract.namePattern}$ (it names a file and a systemd credential).";
    }) (builtins.attrNames cfg);

    # The deploy reads $SYSTEM_CLOSURE/etc/blog/secret-units (a system's
    # toplevel links etc to its /etc tree: nixpkgs
    # nixos/modules/system/activation/top-level.nix,
    # `ln -s ${config.system.build.etc}/etc $out/etc`). One line per declared
    # secret, sorted by name: `<name> [<unit> ...]`, the units to restart when
    # it changes (none: the name alone). Present, maybe empty, on every host.
    environment.etc."blog/secret-units".text = credentials.secretUnitsText (
      lib.mapAttrs (_: secret: secret.restartUnits) cfg
    );

    # The deploy makes /var/lib/blog-secrets a symlink to a set directory in
    # /var/lib/blog-secrets.d (scripts/target-shim.sh) and swaps the link
    # atomically, so only the store is kept here: 0700 root:root on every
    # boot and activation, also if it exists (tmpfiles.d(5): "d ... The mode
    # and ownership will be adjusted if specified"), with no age, so nothing
    # in it is ever cleaned up. A `d` line on the link itself would not
    # follow it: systemd-tmpfiles reports "already exists and is not a
    # directory" and adjusts nothing (tried with systemd 252).
    systemd.tmpfiles.rules = [ "d ${contract.store} 0700 root root -" ];

    # A reboot between a delivery and its commit (the deploy's state in /run
    # is gone) would boot the old system with the new secrets until the next
    # deploy takes the lock. At boot, before any service reads a credential,
    # the deploy's own rule is applied (scripts/target-shim.sh, secrets.sh
    # "resolve"): a committed delivery whose system runs is kept, any other is
    # undone. No unit runs yet, so nothing needs a restart. It acts only on a
    # delivery of an earlier boot, runs once per boot (RemainAfterExit) and is
    # never restarted by a switch (restartIfChanged = false): activation starts
    # sysinit.target, which would otherwise run it again in the middle of every
    # deploy and undo that deploy's own delivery. The unit and its script:
    # units/secrets-resolve.nix, which the test systems render too.
    systemd.services.blog-secrets-resolve = {
      inherit (resolve)
        description
        wantedBy
        before
        after
        conflicts
        unitConfig
        serviceConfig
        restartIfChanged
        environment
        ;
      path = map (name: pkgs.${name}) resolve.path;
      script = builtins.readFile resolve.script;
    };
  };
}
