# shellcheck shell=bash
# What the backup's host scripts share (backup-prepare.sh, backup-cleanup.sh,
# backup-tool.sh) and what scripts/backup-status.sh uses where `pulumi` runs:
# restic with the target's options, the environment file the stack delivers,
# the units that need the data volume, the status files. Sourced, never run.
#
# The stack delivers (nix/modules/backup.nix reads them; src/backup.ts writes them):
#   RESTIC_REPOSITORY_FILE  the repository string (sftp://... or s3:...)
#   RESTIC_PASSWORD_FILE    the repository password
#   the environment file    BLOG_BACKUP_SFTP_{USER,HOST,PORT,HOST_KEY,PASSWORD}
#                           or AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
#                           BLOG_BACKUP_S3_REGION
# Environment of the scripts: BLOG_BACKUP_SFTP_COMMAND (backup-sftp.sh, restic's
# sftp.command), BLOG_BACKUP_STATE (/var/lib/blog-backup: the status files),
# BLOG_BACKUP_TAG (the snapshots' tag), DATA_MOUNT (/data),
# BLOG_BACKUP_STOP_UNITS (the services that own state directories, stopped for
# the copy besides those that need DATA_MOUNT).

# backup_restic ARGS...: restic with the options of both targets (each backend
# reads only its own: -o sftp.* for sftp:, -o s3.* for s3:).
backup_restic() {
  restic -o "sftp.command=${BLOG_BACKUP_SFTP_COMMAND:?}" -o "s3.region=${BLOG_BACKUP_S3_REGION:-}" "$@"
}

# backup_load_environment FILE: exports each NAME=value line of the environment
# file the stack delivered (systemd.exec(5) EnvironmentFile= form, one
# assignment a line). Never evaluated as shell: a value may hold spaces.
backup_load_environment() {
  local file=$1 line name
  [[ -r $file ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    [[ -n $line && $line != \#* ]] || continue
    name=${line%%=*}
    [[ $name =~ ^[A-Z_][A-Z0-9_]*$ && $line == *=* ]] || {
      echo "error: $file: a line that is not NAME=value" >&2
      return 1
    }
    export "$name=${line#*=}"
  done <"$file"
}

# backup_missing_repository TEXT: whether restic's error TEXT says only that
# the repository's config object is not there (so a repository may be made
# there). A missing bucket, refused credentials, an unreachable target or a
# wrong password are errors, never an init.
backup_missing_repository() {
  grep -qiE 'unable to open config file: .*(specified key does not exist|NoSuchKey|no such file or directory|file does not exist)' <<<"$1" &&
    ! grep -qiE 'bucket does not exist|NoSuchBucket' <<<"$1"
}

# backup_repository_state: "ok", "missing" (no repository there yet) or
# "error: <restic's Fatal line>", from `restic cat config`; restic's and ssh's
# messages in $BACKUP_ERRORS when set. Only "missing" may lead to an init.
backup_repository_state() {
  local err
  if err=$(backup_restic cat config 2>&1 >/dev/null); then
    echo ok
    return 0
  fi
  [[ -z ${BACKUP_ERRORS:-} ]] || printf '%s\n' "$err" >>"$BACKUP_ERRORS"
  if backup_missing_repository "$err"; then
    echo missing
  else
    # restic's "Fatal: ..." line (the lines after it repeat the repository's location).
    echo "error: $({ grep -m 1 'Fatal' <<<"$err" || grep -v '^\s*$' <<<"$err" | tail -n 1; } | cut -c1-300)"
  fi
}

# backup_units_needing UNIT...: the service, socket, timer and path units that
# need UNIT (Requires=, Requisite=, BindsTo=, through mount and service units,
# transitively), and the units that trigger them; one a line. The rule
# scripts/data-backup.sh stops by too (it sends this function to the host).
backup_units_needing() {
  local queue=("$@") seen=" " unit dep
  while ((${#queue[@]} > 0)); do
    unit=${queue[0]}
    queue=("${queue[@]:1}")
    for dep in $(systemctl show -p RequiredBy -p RequisiteOf -p BoundBy -p TriggeredBy --value "$unit"); do
      [[ $seen != *" $dep "* ]] || continue
      seen+="$dep "
      case $dep in
      *.service | *.socket | *.timer | *.path)
        echo "$dep"
        queue+=("$dep")
        ;;
      *.mount) queue+=("$dep") ;;
      esac
    done
  done
}

# backup_data_units copy|restore: what is stopped for a consistent copy: the units
# that need DATA_MOUNT when it is a mount point (and its bind mounts' users),
# and BLOG_BACKUP_STOP_UNITS; for a restore, the bind mounts of DATA_MOUNT's
# device too (a restore renames the directories they bind: started again, they
# bind the restored ones). One a line, sorted, each once.
backup_data_units() {
  local purpose=$1 mount_point=${DATA_MOUNT:-/data} devnum units=() binds=() line
  if mountpoint -q "$mount_point"; then
    units+=("$(systemd-escape --path --suffix=mount "$mount_point")")
    devnum=$(findmnt -n -o MAJ:MIN --mountpoint "$mount_point" | tail -n 1 | tr -d ' ')
    while IFS= read -r line; do
      [[ $line == "$mount_point" ]] || binds+=("$(systemd-escape --path --suffix=mount "$line")")
    done < <(findmnt -l -n -o MAJ:MIN,TARGET | awk -v d="$devnum" '$1 == d {print $2}')
    units+=("${binds[@]}")
  fi
  {
    ((${#units[@]} == 0)) || backup_units_needing "${units[@]}"
    [[ $purpose != restore ]] || printf '%s\n' "${binds[@]}"
    # shellcheck disable=SC2086 # unit names hold no whitespace
    printf '%s\n' ${BLOG_BACKUP_STOP_UNITS:-}
  } | grep -v '^$' | sort -u || true
}

# backup_stop_units FILE UNIT...: stops the units that are active, records in
# FILE (one a line) every unit that was active and is not any more and is one
# of the named ones or depends on one (what the stop took down with them; not
# a unit that ended by itself meanwhile, as systemd-fsckd does when idle);
# fails, naming them, when a unit is still active after START_TIMEOUT (300 s).
backup_stop_units() {
  local file=$1 before after dependents unit state still=()
  shift
  : >"$file"
  (($# > 0)) || return 0
  dependents=$({
    printf '%s\n' "$@"
    systemctl list-dependencies --reverse --all --plain --no-legend "$@" 2>/dev/null | awk '{print $1}'
  } | sort -u)
  before=$(systemctl list-units --state=active --no-legend --plain | awk '{print $1}' | sort)
  timeout "${START_TIMEOUT:-300}" systemctl stop "$@" || true
  after=$(systemctl list-units --state=active --no-legend --plain | awk '{print $1}' | sort)
  comm -23 <(printf '%s\n' "$before") <(printf '%s\n' "$after") |
    comm -12 - <(printf '%s\n' "$dependents") >"$file" || true
  for unit in "$@"; do
    state=$(systemctl show -p ActiveState --value "$unit")
    [[ $state == inactive || $state == failed ]] || still+=("$unit ($state)")
  done
  if ((${#still[@]} > 0)); then
    echo "error: could not stop ${still[*]} within ${START_TIMEOUT:-300}s: the copy would not be consistent" >&2
    return 1
  fi
  echo "stopped for the copy: $(tr '\n' ' ' <"$file")"
}

# backup_start_units FILE: starts the units FILE lists again, once (FILE is
# emptied first, so a second call does nothing); fails naming those not running.
backup_start_units() {
  local file=$1 units=() unit state down=()
  [[ -s $file ]] || return 0
  mapfile -t units <"$file"
  : >"$file"
  if timeout "${START_TIMEOUT:-300}" systemctl start "${units[@]}"; then
    echo "started again: ${units[*]}"
    return 0
  fi
  for unit in "${units[@]}"; do
    state=$(systemctl show -p ActiveState --value "$unit" 2>/dev/null) || state=unknown
    [[ $state == active || $state == activating || $state == reloading ]] || down+=("$unit ($state)")
  done
  echo "error: starting again what was stopped for the copy failed; not running: ${down[*]:-none}" >&2
  return 1
}

# backup_now: the time as the status files write it (UTC, ISO 8601).
backup_now() {
  date -u +%Y-%m-%dT%H:%M:%SZ
}

# backup_write_status FILE JSON: replaces FILE atomically (0644: it holds no secret).
backup_write_status() {
  local file=$1 json=$2
  mkdir -p "$(dirname "$file")"
  printf '%s\n' "$json" >"$file.new"
  chmod 0644 "$file.new"
  mv -f "$file.new" "$file"
}

# backup_latest_snapshot: the newest snapshot of the tag as one JSON object
# {id, time, paths} on stdout, nothing when there is none; fails when restic does.
backup_latest_snapshot() {
  local out
  out=$(backup_restic snapshots --json --latest 1 --tag "${BLOG_BACKUP_TAG:-blog}") || return 1
  jq -c 'if type == "array" and length > 0 then (sort_by(.time) | last | {id, time, paths}) else empty end' <<<"$out"
}
