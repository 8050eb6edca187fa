# The backup's units for a test system (closures.nix's `units`), rendered from the same data and
# scripts as nix/modules/backup.nix (nix/modules/units/backup.nix, units/backup-*.sh), the
# way nixpkgs' restic module renders a job (nixos/modules/services/backup/restic.nix, nixos-26.x):
#   restic-backups-<job>.service  Type=oneshot; Environment= RESTIC_CACHE_DIR, RESTIC_PASSWORD_FILE,
#                                 RESTIC_REPOSITORY_FILE (and the module's own); EnvironmentFile=;
#                                 ExecStartPre= the preStart script: backupPrepareCommand, then
#                                 the paths appended to /run/restic-backups-<job>/includes;
#                                 ExecStart= restic -o <extraOptions>... backup <extraBackupArgs>
#                                 --exclude-file=<file> --files-from=<includes>; then (prune jobs)
#                                 `restic unlock` and `restic forget --prune <pruneOpts>`, (check
#                                 jobs) `restic check <checkOpts>`; ExecStopPost= the postStop
#                                 script: backupCleanupCommand, then rm -f the includes file;
#                                 RuntimeDirectory, CacheDirectory (0700), PrivateTmp; Wants= and
#                                 After= network-online.target
#   restic-backups-<job>.timer    [Timer] from timerConfig, wanted by timers.target
# NixOS writes preStart/postStop as scripts run by bash -e (systemd-lib.nix makeJobScript).
# Checked by review only, as it needs nixpkgs: that nixpkgs' rendering is this one line for line
# (the order of the ExecStart= lines, the preStart/postStop order, the `-o` options' quoting).
{
  modules,
  # Where the scripts are: a store path of their own by default (`scripts` below), which the
  # units' text refers to, so a closure made with these units holds it; or a directory a closure
  # writes `files` into itself (closures.nix substituting @out@).
  dir ? null,
  system ? builtins.currentSystem,
  dataVolume ? true,
  # The state directories without a volume, and their owners.
  directories ? [ "/var/lib/private/blog-backend" ],
  stopUnits ? [ "blog-backend.service" ],
  extraPaths ? [ ],
  drill ? true,
}:
let
  u = import (modules + "/units/backup.nix");
  # Where the unit files find the scripts, and where the scripts find each other.
  dir' = if dir == null then "${scripts}" else dir;
  fileDir = if dir == null then "@dir@" else dir;
  concat = builtins.concatStringsSep "";
  restic = "/usr/bin/restic";
  paths = (if dataVolume then [ u.dataMount ] else directories) ++ extraPaths;
  env =
    u.environment {
      dataMount = u.dataMount;
      inherit stopUnits;
      lib = "${dir'}/backup-lib.sh";
      sftp = "${dir'}/backup-sftp.sh";
    }
    // {
      BLOG_BACKUP_DUMP = "${dir'}/dump";
    };
  resticEnv = {
    RESTIC_CACHE_DIR = "/var/cache/restic-backups-${u.job}";
    RESTIC_PASSWORD_FILE = u.restic.passwordFile;
    RESTIC_REPOSITORY_FILE = u.restic.repositoryFile;
  };
  options = concat (map (o: " -o ${o}") (u.restic.extraOptions "${dir'}/backup-sftp.sh"));
  resticCmd = "${restic}${options}";
  includes = "/run/${u.unit}/includes";
  environmentLines = e: concat (map (n: "Environment=\"${n}=${e.${n}}\"\n") (builtins.attrNames e));

  # A restic job's service, as nixpkgs renders it.
  jobService =
    {
      name,
      description,
      execStart,
      preStart ? null,
      postStop ? null,
      after ? [ ],
      unitLines ? "",
    }:
    ''
      [Unit]
      Description=${description}
      Wants=network-online.target
      After=${builtins.concatStringsSep " " ([ "network-online.target" ] ++ after)}
      ConditionPathExists=${u.unitConfig.ConditionPathExists}
      ${unitLines}

      [Service]
    ''
    + environmentLines (resticEnv // env)
    + ''
      X-RestartIfChanged=false
      Type=oneshot
      EnvironmentFile=${u.restic.environmentFile}
      RuntimeDirectory=restic-backups-${name}
      CacheDirectory=restic-backups-${name}
      CacheDirectoryMode=0700
      PrivateTmp=true
    ''
    + (if preStart == null then "" else "ExecStartPre=${dir'}/${name}-pre-start\n")
    + concat (map (c: "ExecStart=${c}\n") execStart)
    + (if postStop == null then "" else "ExecStopPost=${dir'}/${name}-post-stop\n");

  # Files the closure writes into `dir`: name -> text (`script`: a unit script, bash -e first).
  files = {
    "backup-lib.sh" = builtins.readFile u.scripts.lib;
    "backup-sftp.sh" = builtins.readFile u.scripts.sftp;
    "backup-prepare.sh" = builtins.readFile u.scripts.prepare;
    "backup-cleanup.sh" = builtins.readFile u.scripts.cleanup;
    "dump" = "#!/bin/bash\n:\n";
    "exclude-patterns" = builtins.concatStringsSep "\n" (u.excludes u.dataMount) + "\n";
    "static-paths" = builtins.concatStringsSep "\n" paths + "\n";
    "${u.job}-pre-start" = ''
      #!/bin/bash -e
      /bin/bash ${fileDir}/backup-prepare.sh
      cat ${fileDir}/static-paths >> ${includes}
    '';
    "${u.job}-post-stop" = ''
      #!/bin/bash -e
      /bin/bash ${fileDir}/backup-cleanup.sh
      rm -f ${includes}
    '';
    # blog-backup, as nix/modules/backup.nix writes it: the environment, then the tool.
    "blog-backup" =
      "#!/bin/bash\n"
      + concat (map (n: "export ${n}='${fileEnv.${n}}'\n") (builtins.attrNames fileEnv))
      + builtins.readFile u.scripts.tool;
  };
  executables = [
    "backup-sftp.sh"
    "dump"
    "${u.job}-pre-start"
    "${u.job}-post-stop"
    "blog-backup"
  ];

  # The scripts' own view of the environment (paths inside the scripts' store path).
  fileEnv =
    u.environment {
      dataMount = u.dataMount;
      inherit stopUnits;
      lib = "${fileDir}/backup-lib.sh";
      sftp = "${fileDir}/backup-sftp.sh";
    }
    // {
      BLOG_BACKUP_DUMP = "${fileDir}/dump";
    };

  # The scripts as a store path (builder /bin/sh, no nixpkgs), with bin/blog-backup.
  scripts = derivation {
    inherit system;
    name = "blog-backup-scripts";
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    # "name source" lines: each file's text as a store file of its own (builtins.toFile).
    sources = concat (map (n: "${n} ${builtins.toFile "blog-backup-${n}" files.${n}}\n") (builtins.attrNames files));
    executables = builtins.concatStringsSep " " executables;
    args = [
      "-c"
      ''
        set -e
        mkdir -p $out/bin
        printf '%s' "$sources" | while read -r name src; do
          sed "s|@dir@|$out|g" "$src" > "$out/$name"
        done
        for name in $executables; do chmod +x "$out/$name"; done
        ln -s ../blog-backup $out/bin/blog-backup
      ''
    ];
  };

  timer = description: timerConfig: ''
    [Unit]
    Description=${description}

    [Timer]
  '' + concat (map (k: "${k}=${let v = timerConfig.${k}; in if builtins.isBool v then (if v then "true" else "false") else toString v}\n") (builtins.attrNames timerConfig));
in
{
  inherit paths env files executables scripts;
  # name -> { text; wantedBy; }, as closures.nix's `units` takes them.
  units =
    {
      "${u.unit}.service" = {
        text = jobService {
          name = u.job;
          description = "restic backups ${u.job}";
          preStart = true;
          postStop = true;
          unitLines = "OnSuccess=${u.pruneUnit}.service";
          after = if dataVolume then [ "data.mount" ] else [ ];
          execStart = [ "${resticCmd} backup --tag ${u.tag} --exclude-file=${dir'}/exclude-patterns --files-from=${includes}" ];
        };
        wantedBy = [ ];
      };
      "${u.unit}.timer" = {
        text = timer "restic backups ${u.job} (nightly)" u.timerConfig;
        wantedBy = [ "timers.target" ];
      };
      "${u.pruneUnit}.service" = {
        text = jobService {
          name = "${u.job}-prune";
          description = "restic backups ${u.job}-prune";
          after = [ "${u.unit}.service" ];
          execStart = [
            "${resticCmd} unlock"
            "${resticCmd} forget --prune ${builtins.concatStringsSep " " u.pruneOpts}"
          ];
        };
        wantedBy = [ ];
      };
      "${u.checkUnit}.service" = {
        text = jobService {
          name = "${u.job}-check";
          description = "restic backups ${u.job}-check";
          after = [
            "${u.unit}.service"
            "${u.pruneUnit}.service"
          ];
          execStart = [ "${resticCmd} check ${builtins.concatStringsSep " " u.checkOpts}" ];
        };
        wantedBy = [ ];
      };
      "${u.checkUnit}.timer" = {
        text = timer "restic backups ${u.job}-check (weekly)" u.checkTimerConfig;
        wantedBy = [ "timers.target" ];
      };
      "${u.drillUnit}.service" = {
        text =
          ''
            [Unit]
            Description=${u.drillService.description}
            After=${builtins.concatStringsSep " " u.drillService.after}
            Wants=${builtins.concatStringsSep " " u.drillService.wants}
            ConditionPathExists=${u.unitConfig.ConditionPathExists}

            [Service]
          ''
          + environmentLines env
          + ''
            X-RestartIfChanged=false
            Type=oneshot
            CacheDirectory=${u.drillService.serviceConfig.CacheDirectory}
            CacheDirectoryMode=${u.drillService.serviceConfig.CacheDirectoryMode}
            ExecStart=${dir'}/blog-backup drill
          '';
        wantedBy = [ ];
      };
    }
    // (
      if drill then
        {
          "${u.drillUnit}.timer" = {
            text = timer "restore drill (weekly)" u.drillTimerConfig;
            wantedBy = [ "timers.target" ];
          };
        }
      else
        { }
    );
}
