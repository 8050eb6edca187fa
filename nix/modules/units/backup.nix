# Data, not a module (no nixpkgs): the backup's jobs and units. nix/modules/backup.nix
# builds services.restic.backups.* and the drill unit from it; the test systems
# (tests/integration/harness/closures.nix) render the same units from it and run
# the same scripts on a real systemd. Option names are NixOS's (systemd.services.<name>,
# services.restic.backups.<name>); `path` names nixpkgs packages; scripts are files.
let
  names = import ../secret-names.nix;
in
rec {
  # services.restic.backups.<job>: the units are restic-backups-<job>.service and .timer
  # (nixpkgs nixos/modules/services/backup/restic.nix); -prune and -check beside it.
  job = "blog";
  unit = "restic-backups-${job}";
  pruneUnit = "restic-backups-${job}-prune";
  checkUnit = "restic-backups-${job}-check";
  drillUnit = "blog-backup-drill";
  # Where the data volume is mounted (nix/modules/data.nix's mount point, the stack's contract).
  dataMount = "/data";
  # Every snapshot carries it; retention and the status look at it only.
  tag = "blog";
  stateDirectory = "/var/lib/blog-backup";
  cacheDirectory = "/var/cache/restic-backups-${job}";

  # The host secrets the stack delivers (src/backup.ts); the units need the repository's.
  secrets = {
    repository = "${names.directory}/backupRepository";
    password = "${names.directory}/backupPassword";
    environment = "${names.directory}/backupEnvironment";
  };

  # What a restore or a drill leaves on the volume, and the volume's own lost+found.
  excludes = dataMount: [
    "${dataMount}/lost+found"
    "${dataMount}/.before-restore-*"
    "${dataMount}/.failed-restore-*"
    "${dataMount}/.restore-*"
    "${dataMount}/.drill-*"
  ];

  # Nightly between 01:00 and 04:00 (a random time each night, so boxes shared by many
  # customers are not hit at once), and at the next boot after a night the host was off.
  timerConfig = {
    OnCalendar = "*-*-* 01:00:00";
    RandomizedDelaySec = "3h";
    Persistent = true;
  };

  # restic forget --prune after every good backup: 7 daily, 4 weekly, 6 monthly snapshots,
  # one group for all of them (a new server, new extra paths: still one history).
  pruneOpts = [
    "--tag ${tag}"
    "--group-by tags"
    "--keep-daily 7"
    "--keep-weekly 4"
    "--keep-monthly 6"
  ];

  # restic check once a week, reading 5% of the data packs (a different random part each time).
  checkOpts = [ "--read-data-subset=5%" ];
  checkTimerConfig = {
    OnCalendar = "Sun *-*-* 12:00:00";
    RandomizedDelaySec = "2h";
    Persistent = true;
  };

  # The drill: weekly, on another day than the check.
  drillTimerConfig = {
    OnCalendar = "Wed *-*-* 12:00:00";
    RandomizedDelaySec = "2h";
    Persistent = true;
  };

  # What the scripts need on PATH (nixpkgs package names).
  path = [
    "restic"
    "openssh"
    "jq"
    "coreutils"
    "util-linux"
    "findutils"
    "diffutils"
    "gnugrep"
    "gawk"
    "systemd"
  ];

  scripts = {
    lib = ./backup-lib.sh;
    sftp = ./backup-sftp.sh;
    prepare = ./backup-prepare.sh;
    cleanup = ./backup-cleanup.sh;
    tool = ./backup-tool.sh;
  };

  # The scripts' environment (backup-lib.sh); `lib` and `sftp` are the store paths of
  # scripts.lib and scripts.sftp, `stopUnits` the owners of the state directories.
  environment =
    {
      dataMount,
      stopUnits,
      lib,
      sftp,
    }:
    {
      BLOG_BACKUP_LIB = lib;
      BLOG_BACKUP_SFTP_COMMAND = sftp;
      BLOG_BACKUP_STATE = stateDirectory;
      BLOG_BACKUP_SECRETS = names.directory;
      BLOG_BACKUP_TAG = tag;
      DATA_MOUNT = dataMount;
      BLOG_BACKUP_STOP_UNITS = builtins.concatStringsSep " " stopUnits;
      START_TIMEOUT = "300";
    };

  # The job's repository and options, the same for the backup, prune and check jobs.
  restic = {
    repositoryFile = secrets.repository;
    passwordFile = secrets.password;
    environmentFile = secrets.environment;
    # Each backend reads its own: sftp.command for sftp:, s3.region for s3:. systemd expands
    # ${BLOG_BACKUP_S3_REGION} from the environment file (empty: restic asks the server).
    extraOptions = sftp: [
      "sftp.command=${sftp}"
      "s3.region=\${BLOG_BACKUP_S3_REGION}"
    ];
    # No wrapper: nixpkgs' restic-<job> sources the environment file as shell, which a
    # value with a space (the box's host key line) breaks; blog-backup is the host's command.
    createWrapper = false;
  };

  # Without the stack's secrets (blog:backupTarget none) every unit is skipped, not failed.
  unitConfig = {
    ConditionPathExists = secrets.repository;
  };

  # The drill's unit (systemd.services.<drillUnit>): blog-backup drill.
  drillService = {
    description = "Restore the newest backup into a scratch directory and compare it with the live data";
    after = [
      "${unit}.service"
      "${pruneUnit}.service"
      "${checkUnit}.service"
      "network-online.target"
    ];
    wants = [ "network-online.target" ];
    inherit unitConfig;
    serviceConfig = {
      Type = "oneshot";
      CacheDirectory = "restic-backups-${job}";
      CacheDirectoryMode = "0700";
    };
    restartIfChanged = false;
  };
}
