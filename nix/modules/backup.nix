# Backups off the host: restic, nightly, to the target the stack configures
# (blog:backupTarget: a Storage Box sub-account or an S3 bucket). Everything
# per stack, the repository, its password and the target's credentials, comes
# as host secrets the deploy delivers (src/backup.ts); nothing of it is in the
# Nix store. Without them (backupTarget none) the units are skipped.
#
# Built on nixpkgs' services.restic.backups (nixos/modules/services/backup/restic.nix,
# as read on the nixos-26.x line: repositoryFile, passwordFile, environmentFile,
# extraOptions, backupPrepareCommand in preStart, backupCleanupCommand in
# postStop, pruneOpts, runCheck/checkOpts, timerConfig, createWrapper):
#
#   restic-backups-blog          the backup. preStart: backup-prepare.sh (opens
#                                or creates the repository, stops the services
#                                that write the data); ExecStart: restic backup
#                                of blog.backup.paths; postStop (every exit
#                                path): backup-cleanup.sh (starts them again,
#                                writes /var/lib/blog-backup/status.json). The
#                                services are down for the copy only: pruning
#                                and checking are jobs of their own.
#   restic-backups-blog-prune    restic forget --prune (7 daily, 4 weekly, 6
#                                monthly), started when a backup succeeded
#   restic-backups-blog-check    restic check --read-data-subset=5%, weekly
#   blog-backup-drill            blog-backup drill, weekly: the newest snapshot
#                                restored into a scratch directory and compared
#                                with the live data; /var/lib/blog-backup/drill.json
#   blog-backup                  the host's command: status, snapshots, restore, drill
#
# The units, schedules and scripts are data in units/backup.nix and files in
# units/, which the test systems render and run on a real systemd too.
#
# Consistency: the writers stop for the copy (a few seconds for a blog's state).
# The example backend keeps files only, so that is all it needs. A service with
# a database that must keep running sets blog.backup.dumpCommand (a dump into
# a backed-up path, run before the writers stop) and excludes the live files
# with blog.backup.exclude; see the option's example.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.blog.backup;
  units = import ./units/backup.nix;

  dataVolume = config.blog.host.dataVolume;
  directories = builtins.attrNames config.blog.data.directories;
  # Without a volume the state directories themselves, on the root disk.
  paths = (if dataVolume then [ units.dataMount ] else directories) ++ cfg.extraPaths;
  stopUnits = lib.unique (
    lib.concatMap (dir: map (s: "${s}.service") config.blog.data.directories.${dir}.services) directories
  );

  libFile = pkgs.writeText "blog-backup-lib.sh" (builtins.readFile units.scripts.lib);
  sftp = pkgs.writeShellScript "blog-backup-sftp" (builtins.readFile units.scripts.sftp);
  dump = pkgs.writeShellScript "blog-backup-dump" (if cfg.dumpCommand == null then ":" else cfg.dumpCommand);
  prepare = pkgs.writeShellScript "blog-backup-prepare" (builtins.readFile units.scripts.prepare);
  cleanup = pkgs.writeShellScript "blog-backup-cleanup" (builtins.readFile units.scripts.cleanup);
  path = map (name: pkgs.${name}) units.path;
  environment =
    units.environment {
      dataMount = units.dataMount;
      inherit stopUnits;
      lib = "${libFile}";
      sftp = "${sftp}";
    }
    // {
      BLOG_BACKUP_DUMP = "${dump}";
    };
  tool = pkgs.writeShellScriptBin "blog-backup" ''
    export PATH=${lib.makeBinPath path}:$PATH
    ${lib.concatStrings (lib.mapAttrsToList (n: v: "export ${n}=${lib.escapeShellArg v}\n") environment)}
    ${builtins.readFile units.scripts.tool}
  '';

  # What the backup, prune and check jobs share.
  common = {
    inherit (units.restic) repositoryFile passwordFile environmentFile createWrapper;
    extraOptions = units.restic.extraOptions sftp;
    initialize = false;
  };
in
{
  options.blog.backup = {
    extraPaths = lib.mkOption {
      type = lib.types.listOf (lib.types.strMatching "(/[^/[:space:]]+)+");
      default = [ ];
      example = [ "/var/lib/postgresql-dump" ];
      description = ''
        Absolute paths backed up besides the services' state (the data volume
        at /data, or without one the directories of `blog.data.directories`).
      '';
    };

    exclude = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "/data/var/lib/postgresql" ];
      description = "restic exclude patterns, besides what restores and drills leave on the volume.";
    };

    dumpCommand = lib.mkOption {
      type = lib.types.nullOr lib.types.lines;
      default = null;
      example = lib.literalExpression ''
        '''
          # A consistent dump while PostgreSQL runs, into a path the backup copies:
          ''${config.services.postgresql.package}/bin/pg_dumpall -U postgres > /data/dump/all.sql.tmp
          mv /data/dump/all.sql.tmp /data/dump/all.sql
        '''
      '';
      description = ''
        Shell commands run as root before the services that write the data
        stop, for state that must be dumped by its own service (a database).
        The example backend keeps plain files and needs none. A failing dump
        fails the backup.
      '';
    };

    timerConfig = lib.mkOption {
      type = lib.types.attrsOf (lib.types.either lib.types.str lib.types.bool);
      default = units.timerConfig;
      description = "When the nightly backup runs (systemd.timer(5)); Persistent catches up after downtime.";
    };

    drillTimerConfig = lib.mkOption {
      type = lib.types.nullOr (lib.types.attrsOf (lib.types.either lib.types.str lib.types.bool));
      default = units.drillTimerConfig;
      description = "When the restore drill runs; null: only by hand (`scripts/backup.sh drill`).";
    };

    paths = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      readOnly = true;
      default = paths;
      defaultText = lib.literalMD "/data with a data volume, else the directories of `blog.data.directories`; then `extraPaths`";
      description = "What the backup copies. The stack reads it at preview (src/host.ts).";
    };
  };

  config = lib.mkIf (paths != [ ]) {
    services.restic.backups = {
      ${units.job} = common // {
        inherit paths;
        exclude = units.excludes units.dataMount ++ cfg.exclude;
        extraBackupArgs = [ "--tag ${units.tag}" ];
        inherit (cfg) timerConfig;
        backupPrepareCommand = "${prepare}";
        backupCleanupCommand = "${cleanup}";
        pruneOpts = [ ];
        runCheck = false;
      };
      "${units.job}-prune" = common // {
        paths = [ ];
        inherit (units) pruneOpts;
        runCheck = false;
        timerConfig = null;
      };
      "${units.job}-check" = common // {
        paths = [ ];
        pruneOpts = [ ];
        runCheck = true;
        inherit (units) checkOpts;
        timerConfig = units.checkTimerConfig;
      };
    };

    systemd.services = {
      ${units.unit} = {
        inherit environment path;
        inherit (units) unitConfig;
        # Prune only after a good backup, in a unit of its own: the services are up again by then.
        onSuccess = [ "${units.pruneUnit}.service" ];
        # The data volume is mounted (or its absence noticed) before the copy.
        after = lib.optional dataVolume "data.mount";
      };
      ${units.pruneUnit} = {
        inherit environment path;
        inherit (units) unitConfig;
        after = [ "${units.unit}.service" ];
      };
      ${units.checkUnit} = {
        inherit environment path;
        inherit (units) unitConfig;
        after = [
          "${units.unit}.service"
          "${units.pruneUnit}.service"
        ];
      };
      ${units.drillUnit} = units.drillService // {
        inherit environment path;
        serviceConfig = units.drillService.serviceConfig // {
          ExecStart = "${tool}/bin/blog-backup drill";
        };
      };
    };

    systemd.timers.${units.drillUnit} = lib.mkIf (cfg.drillTimerConfig != null) {
      wantedBy = [ "timers.target" ];
      timerConfig = cfg.drillTimerConfig;
    };

    # The status files: not secret, read by scripts/backup.sh and other tools.
    systemd.tmpfiles.rules = [ "d ${units.stateDirectory} 0755 root root -" ];

    environment.systemPackages = [ tool ];
  };
}
