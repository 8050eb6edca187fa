#!/usr/bin/env bash
# A file-level copy of the host's data volume (DATA_MOUNT), and its restore.
# Hetzner has no volume snapshots and its server backups leave volumes out:
# this is the backup of /data, kept where you run it.
#
#   data-backup.sh backup FILE    stops the units that need DATA_MOUNT, streams
#                                 a gzip tar of it (numeric owners, modes, ACLs,
#                                 extended attributes) over SSH into
#                                 FILE.partial (mode 0600), starts exactly the
#                                 stopped units again, checks the archive and
#                                 renames it to FILE. Never overwrites FILE.
#   data-backup.sh restore FILE   checks FILE (a readable gzip tar) here first;
#                                 then stops the same units, moves the current
#                                 content of DATA_MOUNT (all but lost+found and
#                                 earlier .before-restore-*) into
#                                 DATA_MOUNT/.before-restore-<UTC time> (a
#                                 rename: nothing is deleted), extracts FILE
#                                 there with numeric owners, starts the units
#                                 again, and says how to delete the old content.
#                                 If tar fails, what it extracted goes to
#                                 DATA_MOUNT/.failed-restore-<UTC time> and
#                                 the old content back (best effort).
#
# The archive holds the services' secrets as they keep them: store it
# encrypted. It leaves out lost+found and the .before-restore-* and
# .failed-restore-* directories of earlier restores.
# The units: with systemd, every service, socket, timer and path unit that
# Requires=, Requisite= or BindsTo= the mount unit of DATA_MOUNT or of a
# bind mount of it (RequiresMountsFor= makes Requires=), transitively, and the
# triggers of those services; restore also stops the bind mounts, so that they
# bind the restored directories. Without systemd: no units, just the copy.
# After the wait for SSH, each verb is one SSH session: the target's script is
# its command, the archive its stdout (backup) or stdin (restore).
#
# Input: the verb and FILE as arguments. The target from the environment
# (secrets only here, never arguments): TARGET_HOST and HOST_KEY (the pinned
# host key line; whichever is unset comes from `pulumi stack output --json`
# of the current stack, run in the project directory: ipv4, else ipv6, and
# hostKey; needs pulumi and jq), TARGET_PORT (22), TARGET_USER (root),
# SSH_PRIVATE_KEY (else ssh-agent), CONNECT_ATTEMPTS (30), CONNECT_TIMEOUT
# (120 s), DATA_MOUNT (/data), START_TIMEOUT (300 s: each systemctl stop or
# start), COPY_TIMEOUT (3600 s: the copy; the session may take 2 START_TIMEOUT
# and a minute more).
# Exit codes: 0 done; 1 bad input (arguments, environment, no stack outputs,
# backup: FILE exists; restore: FILE missing or not a gzip tar); 2 refused,
# nothing changed (unreachable, another host key, our key refused, DATA_MOUNT
# not a mount point, a unit would not stop, restore: not enough free space);
# 4 failed after a change (backup: no FILE was written, or it was and a unit
# did not start again; restore: the extraction failed and the previous content
# was moved back as far as possible, or a unit did not start again) or the
# state is unknown: the message says what the target holds.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/common.sh
source "$script_dir/lib/common.sh"
# shellcheck source=scripts/lib/data-target.sh
source "$script_dir/lib/data-target.sh"
# shellcheck source=scripts/lib/stack-outputs.sh
source "$script_dir/lib/stack-outputs.sh"
# backup_units_needing: the units that need the data volume, the rule the
# host's backup job stops by too (one definition, sent to the target below).
# shellcheck source=nix/modules/units/backup-lib.sh
source "$script_dir/../nix/modules/units/backup-lib.sh"

# The target's backup says so when the archive is complete but a unit did not
# start again (the archive is kept; we exit EXIT_UNKNOWN).
readonly EXIT_ARCHIVED_UNITS_DOWN=5

verb=""
file=""
partial=""
work_dir=""
session_pid=""
needed_bytes=0
identity_opts=()
ssh_opts=()

parse_command() {
  case ${1:-} in
  backup | restore) verb=$1 ;;
  -h | --help) parse_args "${BASH_SOURCE[0]}" --help ;;
  "") abort "$EXIT_BAD_INPUT" "a verb is required: backup FILE or restore FILE (see --help)" ;;
  *) abort "$EXIT_BAD_INPUT" "unknown verb '$1'; expected backup FILE or restore FILE (see --help)" ;;
  esac
  file=${2:-}
  [[ -n $file ]] || abort "$EXIT_BAD_INPUT" "FILE is required: data-backup.sh $verb FILE (see --help)"
  shift 2
  case ${1:-} in
  "") ;;
  *) abort "$EXIT_BAD_INPUT" "unexpected argument '$1' after FILE; the target comes from environment variables (see --help)" ;;
  esac
}

cleanup() {
  local status=$?
  # An interrupted session ends with us (timeout passes the TERM on to ssh);
  # the host's script then starts the stopped units again.
  [[ -z $session_pid ]] || kill "$session_pid" 2>/dev/null || true
  [[ -z $partial ]] || rm -f -- "$partial"
  [[ -z $work_dir ]] || rm -rf "$work_dir"
  exit "$status"
}

# backup: FILE must not exist (never overwritten), nor FILE.partial.
check_backup_file() {
  local dir
  if [[ -e $file || -L $file ]]; then
    bad_input "FILE '$file' exists; backup never overwrites a file: name a new one (e.g. blog-data-$(date +%F-%H%M).tar.gz)"
  fi
  if [[ -e $file.partial || -L $file.partial ]]; then
    bad_input "'$file.partial' exists: another backup to '$file' is running, or one was killed; remove it if none is running"
  fi
  dir=$(dirname -- "$file")
  [[ -d $dir && -w $dir ]] || bad_input "FILE '$file': its directory '$dir' is not a directory you can write to"
}

# restore: FILE must be a readable gzip tar with at least one member; its
# listing gives the space the extraction needs (each member rounded up to a
# 4 KiB block, at least one: an estimate that errs on the safe side).
check_restore_file() {
  local sizes members
  if [[ ! -e $file ]]; then
    bad_input "FILE '$file' does not exist; nothing was changed"
    return 0
  fi
  if [[ ! -f $file || ! -r $file ]]; then
    bad_input "FILE '$file' is not a readable file; nothing was changed"
    return 0
  fi
  step "restore: checking $file (tar -tvzf)"
  if ! sizes=$(tar --numeric-owner -tvzf "$file" 2>"$work_dir/list.err" |
    awk '{ n++; b = ($3 ~ /^[0-9]+$/) ? int(($3 + 4095) / 4096) : 1; t += (b < 1 ? 1 : b) * 4096 } END { printf "%d %.0f\n", n, t }'); then
    bad_input "FILE '$file' is not a readable gzip-compressed tar archive ($(tail -n 2 "$work_dir/list.err" | tr '\n' ' ' | sed 's/ $//')); nothing was changed"
    return 0
  fi
  read -r members needed_bytes <<<"$sizes"
  if ((members == 0)); then
    bad_input "FILE '$file' holds no tar entries (an empty archive, or not a tar archive); nothing was changed"
    return 0
  fi
  info "$file: a gzip tar of $members entries, about $(human "$needed_bytes") once extracted"
}

# human BYTES: e.g. 1.5MiB.
human() {
  numfmt --to=iec-i --suffix=B --round=nearest "$1"
}

parse_inputs() {
  begin_input_checks
  require_set TARGET_HOST
  require_set HOST_KEY
  TARGET_PORT=${TARGET_PORT:-22}
  TARGET_USER=${TARGET_USER:-root}
  CONNECT_ATTEMPTS=${CONNECT_ATTEMPTS:-30}
  CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-120}
  DATA_MOUNT=${DATA_MOUNT:-/data}
  START_TIMEOUT=${START_TIMEOUT:-300}
  COPY_TIMEOUT=${COPY_TIMEOUT:-3600}
  require_uint TARGET_PORT 1
  require_uint CONNECT_ATTEMPTS 1
  require_uint CONNECT_TIMEOUT 1
  require_uint START_TIMEOUT 1
  require_uint COPY_TIMEOUT 1
  [[ -z ${HOST_KEY:-} ]] || require_host_key HOST_KEY
  check_proxy_jump
  [[ -z ${TARGET_HOST:-} || $TARGET_HOST =~ ^[A-Za-z0-9._:%]([A-Za-z0-9._:%-]*)$ ]] ||
    bad_input "TARGET_HOST='$TARGET_HOST' is not valid; expected an address or host name"
  [[ $TARGET_USER =~ ^[A-Za-z0-9._][A-Za-z0-9._-]*$ ]] ||
    bad_input "TARGET_USER='$TARGET_USER' is not valid; expected a user name"
  require_data_mount DATA_MOUNT
  end_input_checks
}

prepare_ssh() {
  identity_options identity_opts SSH_PRIVATE_KEY "$work_dir/id_admin"
  write_known_hosts "$work_dir/known_hosts" "$HOST_KEY"
  pinned_ssh_options ssh_opts "$work_dir/known_hosts"
  # One session per phase, never a shared connection.
  ssh_opts+=(-o ControlMaster=no -o ControlPath=none "${identity_opts[@]}")
}

# Waits for SSH with the pinned key; any failure is a refusal (exit 2).
connect() {
  local status=0
  step "$verb: connecting to $(target_address) port $TARGET_PORT (pinned host key $(fingerprint "$HOST_KEY"))"
  wait_for_ssh "$verb" "${ssh_opts[@]}" "$(target_address)" true || status=$?
  if ((status == 10)); then
    abort "$EXIT_REFUSED" "$verb: $(target_address) port $TARGET_PORT presents a host key other than the pinned HOST_KEY $(fingerprint "$HOST_KEY"); nothing was changed"
  fi
}

# ---------------------------------------------------------------------------
# The target side: these functions are sent to the target (declare -f) as the
# SSH session's command, with the values as arguments; stdin and stdout carry
# the archive. Besides the shared ones (lib/data-target.sh): exit
# EXIT_REFUSED before changing anything, EXIT_UNKNOWN after a change failed.

# What the exit trap needs: the units to start again, and the bound.
stopped=()
start_timeout=300
content=()

# on_target_check_data MOUNT: DATA_MOUNT must be a mount point, tar and gzip there.
on_target_check_data() {
  local mount_point=$1
  [[ -n $(on_target_mounted_at "$mount_point") ]] ||
    on_target_refuse "$mount_point is not a mount point: the host has no data volume mounted there, nothing to back up or restore into."
  if ! command -v tar >/dev/null || ! command -v gzip >/dev/null; then
    on_target_refuse "tar or gzip is not installed on the host."
  fi
}

# on_target_stop_data_users MOUNT WITH_BINDS: stops the units that need MOUNT
# (and with WITH_BINDS=1 the other mounts of its device: bind mounts), and
# records in `stopped` every unit that was active and is not any more. A unit
# that would not stop is a refusal, after the others are started again.
on_target_stop_data_users() {
  local mount_point=$1 with_binds=$2 devnum mount_unit line unit state units=() binds=() still=()
  if [[ ! -d /run/systemd/system ]]; then
    info "no systemd on the host: no units to stop"
    return 0
  fi
  devnum=$(on_target_mounted_at "$mount_point")
  mount_unit=$(systemd-escape --path --suffix=mount "$mount_point")
  while IFS= read -r line; do
    [[ $line == "$mount_point" ]] || binds+=("$(systemd-escape --path --suffix=mount "$line")")
  done < <(on_target_mounts_of "$devnum")
  mapfile -t units < <(backup_units_needing "$mount_unit" "${binds[@]}" | sort -u)
  ((with_binds == 0)) || units+=("${binds[@]}")
  if ((${#units[@]} == 0)); then
    info "no unit needs $mount_point: nothing to stop"
    return 0
  fi
  info "stopping what needs $mount_point: ${units[*]}"
  mapfile -t stopped < <(on_target_stop_units "$start_timeout" "${units[@]}")
  for unit in "${units[@]}"; do
    state=$(systemctl show -p ActiveState --value "$unit")
    [[ $state == inactive || $state == failed ]] || still+=("$unit ($state)")
  done
  if ((${#still[@]} > 0)); then
    local again="${stopped[*]}"
    on_target_start_stopped || on_target_fail "could not stop ${still[*]} within ${start_timeout}s (START_TIMEOUT), and starting again what the stop took down ($again) failed"
    on_target_refuse "could not stop ${still[*]} within ${start_timeout}s (START_TIMEOUT): the copy would not be consistent${again:+; what the stop took down was started again: $again}."
  fi
  info "stopped: ${stopped[*]:-none (none of them was running)}"
}

# on_target_start_stopped: starts the units in `stopped` again, once.
on_target_start_stopped() {
  local units=("${stopped[@]}") unit state down=()
  ((${#units[@]} > 0)) || return 0
  stopped=()
  if timeout "$start_timeout" systemctl start "${units[@]}" >&2; then
    info "started again: ${units[*]}"
    return 0
  fi
  for unit in "${units[@]}"; do
    state=$(systemctl show -p ActiveState --value "$unit" 2>/dev/null) || state=unknown
    [[ $state == active || $state == activating || $state == reloading ]] || down+=("$unit ($state)")
  done
  printf 'error: starting again the units that were stopped (%s) failed within %ss (START_TIMEOUT); not running: %s\n' \
    "${units[*]}" "$start_timeout" "${down[*]:-none}" >&2
  return 1
}

# on_target_list_content MOUNT: `content` = the entries of MOUNT but
# lost+found and the directories earlier restores left.
on_target_list_content() {
  local entry name
  content=()
  for entry in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    [[ -e $entry || -L $entry ]] || continue
    name=${entry##*/}
    case $name in
    lost+found | .before-restore-* | .failed-restore-*) ;;
    *) content+=("$name") ;;
    esac
  done
}

# The exit trap of both verbs: the stopped units start again on every exit
# path. A backup whose archive is complete says so with its own status.
on_target_exit() {
  local status=$?
  if ! on_target_start_stopped; then
    if ((status == 0)) && [[ $target_verb == backup ]]; then
      status=$EXIT_ARCHIVED_UNITS_DOWN
    else
      status=$EXIT_UNKNOWN
    fi
  fi
  exit "$status"
}

target_verb=""

# on_target_backup MOUNT START_TIMEOUT: the archive on stdout, the rest on stderr.
on_target_backup() {
  local mount_point=$1 status=0
  target_verb=backup
  start_timeout=$2
  exec 3>&1 1>&2
  # A lost connection ends tar with EPIPE; this script still starts the units.
  trap '' PIPE HUP
  on_target_check_data "$mount_point"
  trap on_target_exit EXIT
  on_target_stop_data_users "$mount_point" 0
  info "copying $mount_point"
  tar --create --gzip --file=- --directory="$mount_point" --numeric-owner --xattrs --acls --sparse \
    --one-file-system --anchored --exclude=./lost+found --exclude='./.before-restore-*' --exclude='./.failed-restore-*' \
    . >&3 || status=$?
  exec 3>&-
  case $status in
  0) info "copied $mount_point" ;;
  1) on_target_fail "tar found files that changed while it read them (exit 1): something outside the stopped units writes to $mount_point, so the copy may not be consistent; no archive was kept" ;;
  *) on_target_fail "tar failed (exit $status, its message is above; the connection may have dropped); no archive was kept" ;;
  esac
}

# on_target_restore MOUNT START_TIMEOUT NEEDED_BYTES: the archive on stdin.
on_target_restore() {
  local mount_point=$1 needed=$3 avail stamp n aside meta mtime name status=0 moved=()
  target_verb=restore
  start_timeout=$2
  # The archive on fd 4, read by tar alone; messages on stderr.
  exec 4<&0 0</dev/null 1>&2
  trap '' PIPE HUP
  on_target_check_data "$mount_point"
  avail=$(df --output=avail -B1 "$mount_point" | tail -n 1 | tr -d ' ')
  if ((avail < needed)); then
    on_target_refuse "$mount_point has $(numfmt --to=iec-i --suffix=B --round=nearest "$avail") free and the archive needs about $(numfmt --to=iec-i --suffix=B --round=nearest "$needed") (the current content stays on the volume, moved aside, until you delete it): free space on it or grow the volume (dataVolumeSize)."
  fi
  # The UTC time, and a number after it if a restore of the same second left its directories.
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  for ((n = 2; n < 100; n++)); do
    [[ -e $mount_point/.before-restore-$stamp || -e $mount_point/.failed-restore-$stamp ]] || break
    stamp=${stamp%%-*}-$n
  done
  aside=$mount_point/.before-restore-$stamp
  [[ ! -e $aside ]] || on_target_refuse "$aside exists already; run restore again."
  meta=$(stat -c '%a %u %g %y' "$mount_point")
  trap on_target_exit EXIT
  on_target_stop_data_users "$mount_point" 1

  mkdir -m 700 "$aside" || on_target_fail "could not create $aside; nothing was moved"
  on_target_list_content "$mount_point"
  for name in "${content[@]}"; do
    if ! mv -- "$mount_point/$name" "$aside/"; then
      on_target_move_back "$mount_point" "$aside" || true
      on_target_fail "could not move $mount_point/$name to $aside; what was moved was moved back"
    fi
    moved+=("$name")
  done
  if ((${#moved[@]} > 0)); then
    info "moved the current content of $mount_point (${#moved[@]} entries) to $aside"
  else
    info "$mount_point holds nothing but lost+found and earlier restores' directories: nothing to move aside"
  fi

  info "extracting the archive into $mount_point"
  tar --extract --gzip --file=- --directory="$mount_point" --numeric-owner --same-owner --same-permissions \
    --xattrs --acls <&4 || status=$?
  exec 4<&-
  if ((status != 0)); then
    on_target_undo_restore "$mount_point" "$aside" "$mount_point/.failed-restore-$stamp" "$meta" "$status"
  fi
  info "restored $mount_point from the archive"
  # An empty aside directory goes; the time tar gave DATA_MOUNT stays.
  mtime=$(stat -c %y "$mount_point")
  if ((${#moved[@]} == 0)) && rmdir "$aside"; then
    touch -m -d "$mtime" "$mount_point" || true
    info "$mount_point held nothing before: nothing was kept aside"
  else
    info "the previous content of $mount_point is in $aside; once the restore is confirmed, delete it on the host: rm -rf $aside"
  fi
}

# on_target_move_back MOUNT ASIDE: the aside content back into MOUNT, then
# ASIDE removed; prints what could not be moved, returns 1 then.
on_target_move_back() {
  local mount_point=$1 aside=$2 entry problems=()
  for entry in "$aside"/* "$aside"/.[!.]* "$aside"/..?*; do
    [[ -e $entry || -L $entry ]] || continue
    mv -- "$entry" "$mount_point/" || problems+=("${entry##*/}")
  done
  rmdir "$aside" || problems+=("(the directory $aside itself)")
  ((${#problems[@]} == 0)) || {
    printf 'error: could not move back from %s: %s\n' "$aside" "${problems[*]}" >&2
    return 1
  }
}

# on_target_undo_restore MOUNT ASIDE FAILED META STATUS: the extraction
# failed: what it wrote goes to FAILED, the previous content back, MOUNT's own
# mode and owner as they were. Exits EXIT_UNKNOWN.
on_target_undo_restore() {
  local mount_point=$1 aside=$2 failed=$3 meta=$4 status=$5 name ok=1 mode uid gid mtime
  printf 'error: restore: tar could not extract the archive (exit %s; its messages are above)\n' "$status" >&2
  mkdir -m 700 "$failed" || ok=0
  on_target_list_content "$mount_point"
  for name in "${content[@]}"; do
    mv -- "$mount_point/$name" "$failed/" || ok=0
  done
  on_target_move_back "$mount_point" "$aside" || ok=0
  rmdir "$failed" 2>/dev/null && failed=""
  read -r mode uid gid mtime <<<"$meta"
  chown "$uid:$gid" "$mount_point" && chmod "$mode" "$mount_point" && touch -m -d "$mtime" "$mount_point" || ok=0
  if ((ok)) && [[ -z $failed ]]; then
    on_target_fail "restore failed; the previous content of $mount_point was moved back, as it was"
  elif ((ok)); then
    on_target_fail "restore failed; the previous content of $mount_point was moved back, as it was; what tar had extracted is in $failed (delete it on the host: rm -rf $failed)"
  fi
  on_target_fail "restore failed, and moving the previous content back did not work out (see above): look at $mount_point, $aside and $failed on the host"
}

# The functions sent to the target.
readonly on_target_functions=(
  "${data_target_functions[@]}" on_target_check_data backup_units_needing on_target_stop_data_users
  on_target_start_stopped on_target_list_content on_target_exit on_target_backup on_target_restore
  on_target_move_back on_target_undo_restore
)

# ---------------------------------------------------------------------------

# remote_command ARGS...: the session's command: bash -c <the target's
# script> data-backup ARGS... (ARGS are plain: checked above).
remote_command() {
  local text
  text=$(
    echo 'set -euo pipefail'
    echo 'shopt -s nullglob'
    declare -p EXIT_REFUSED EXIT_UNKNOWN EXIT_ARCHIVED_UNITS_DOWN stopped start_timeout content target_verb
    declare -f info "${on_target_functions[@]}"
    echo 'on_target_"$@"'
  )
  printf "bash -c '%s' data-backup" "${text//\'/\'\\\'\'}"
  printf ' %q' "$@"
}

# run_session STDIN STDOUT ARGS...: the one SSH session of a verb, bounded; its status.
run_session() {
  local input=$1 output=$2 status=0 session_timeout=$((COPY_TIMEOUT + START_TIMEOUT * 2 + 60))
  shift 2
  # The host's messages reach our stderr as printable text only.
  timeout "$session_timeout" ssh "${ssh_opts[@]}" -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 \
    "$(target_address)" "$(remote_command "$@")" <"$input" >"$output" 2> >(sanitize_stream >&2) &
  session_pid=$!
  progress_start "$verb of $DATA_MOUNT" "$([[ $output == /dev/null ]] || printf '%s' "$output")"
  wait "$session_pid" || status=$?
  progress_stop
  session_pid=""
  session_status=$status
  if ((status == 124)); then
    warn "$verb: gave up after ${session_timeout}s (COPY_TIMEOUT=${COPY_TIMEOUT}s plus the stops and starts); the host's script starts the stopped units again once it notices"
  fi
}
session_status=0

run_backup() {
  local bytes entries
  (
    umask 077
    set -o noclobber
    : >"$file.partial"
  ) 2>/dev/null || abort "$EXIT_BAD_INPUT" "could not create '$file.partial' (it exists now, or the directory is not writable); nothing was changed"
  partial=$file.partial
  step "backup: $DATA_MOUNT on $(target_address) into $partial"
  run_session /dev/null "$partial" backup "$DATA_MOUNT" "$START_TIMEOUT"
  case $session_status in
  0 | "$EXIT_ARCHIVED_UNITS_DOWN") ;;
  "$EXIT_REFUSED") exit "$EXIT_REFUSED" ;; # the target said why
  "$EXIT_UNKNOWN") abort "$EXIT_UNKNOWN" "backup failed (see above); no archive was written" ;;
  *) abort "$EXIT_UNKNOWN" "backup failed: the SSH session to $(target_address) ended with exit $session_status; no archive was written; if the connection dropped, the host's script starts the stopped units again when it notices: check them there" ;;
  esac
  step "backup: checking the archive (tar -tzf)"
  entries=$(tar -tzf "$partial" 2>"$work_dir/verify.err" | wc -l) || entries=0
  ((entries > 0)) ||
    abort "$EXIT_UNKNOWN" "backup failed: the archive that arrived does not read back ($(tail -n 2 "$work_dir/verify.err" | tr '\n' ' ' | sed 's/ $//')); it was removed"
  if ln -T -- "$partial" "$file" 2>/dev/null; then
    rm -f -- "$partial"
  elif [[ ! -e $file && ! -L $file ]]; then
    mv -T -- "$partial" "$file"
  else
    partial=""
    abort "$EXIT_BAD_INPUT" "'$file' appeared during the backup; it was left as it is, and the new archive is in '$file.partial'"
  fi
  partial=""
  bytes=$(stat -c %s -- "$file")
  if ((session_status == EXIT_ARCHIVED_UNITS_DOWN)); then
    abort "$EXIT_UNKNOWN" "backup: wrote $file ($bytes bytes, $(human "$bytes"), $entries entries), but units that were stopped for it did not start again (see above): an operator must look"
  fi
  step "backup: wrote $file ($bytes bytes, $(human "$bytes"), $entries entries; mode 0600). It holds the services' secrets: store it encrypted"
}

run_restore() {
  step "restore: $file into $DATA_MOUNT on $(target_address)"
  run_session "$file" /dev/null restore "$DATA_MOUNT" "$START_TIMEOUT" "$needed_bytes"
  case $session_status in
  0) step "restore: done" ;;
  "$EXIT_REFUSED") exit "$EXIT_REFUSED" ;;
  "$EXIT_UNKNOWN") exit "$EXIT_UNKNOWN" ;; # the target said what it holds
  *) abort "$EXIT_UNKNOWN" "restore: the SSH session to $(target_address) ended with exit $session_status; the state of $DATA_MOUNT is unknown: look on the host for $DATA_MOUNT/.before-restore-* (the previous content) and whether the units run" ;;
  esac
}

main() {
  parse_command "$@"
  install_exit_traps cleanup
  make_work_dir
  # FILE's problems and the environment's are reported together (parse_inputs ends the checks).
  begin_input_checks
  "check_${verb}_file"
  read_stack_outputs
  parse_inputs
  prepare_ssh
  connect
  "run_$verb"
}

main "$@"
