# shellcheck shell=bash
# blog-backup: the host's backup command (nix/modules/backup.nix puts it on
# PATH; scripts/backup.sh runs it over SSH; blog-backup-drill.service runs the
# drill). It reads the repository's credentials as the job does, from the
# host secrets the stack delivered.
#
#   blog-backup status            the job's and the drill's status files, as JSON lines
#   blog-backup snapshots         the repository's snapshots (restic snapshots)
#   blog-backup restore [ID]      restores snapshot ID (default: the newest) in
#                                 place: the data's writers stop, the current
#                                 content is moved aside (never deleted), the
#                                 snapshot's content takes its place, the
#                                 writers start again
#   blog-backup drill             restores the newest snapshot into a scratch
#                                 directory and compares it with the live data;
#                                 writes $BLOG_BACKUP_STATE/drill.json; exits 1 on
#                                 a failed drill
#
# Environment (set by the NixOS module): BLOG_BACKUP_LIB, BLOG_BACKUP_SECRETS
# (/var/lib/blog-secrets), BLOG_BACKUP_STATE, BLOG_BACKUP_TAG,
# BLOG_BACKUP_SFTP_COMMAND, DATA_MOUNT, BLOG_BACKUP_STOP_UNITS, START_TIMEOUT.
# Exit codes: 0 done, 1 failed (the message says what the host holds), 2 bad
# input or no backup target configured (nothing changed).
set -euo pipefail
shopt -s nullglob dotglob
# shellcheck source=nix/modules/units/backup-lib.sh
source "${BLOG_BACKUP_LIB:?}"

state_dir=${BLOG_BACKUP_STATE:-/var/lib/blog-backup}
secrets=${BLOG_BACKUP_SECRETS:-/var/lib/blog-secrets}
data_mount=${DATA_MOUNT:-/data}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
work=""
stopped_file=""
drill_written=""
last_error=""

die() {
  last_error=$*
  echo "error: $*" >&2
  exit "${exit_code:-1}"
}

# The exit trap: what was stopped starts again; a drill's scratch copy goes,
# and a drill that stopped half-way is recorded as failed.
cleanup() {
  local status=$?
  if [[ -n $stopped_file ]]; then
    backup_start_units "$stopped_file" || status=1
    rm -f "$stopped_file"
  fi
  if [[ $drill_written == no ]]; then
    drill_result failed "${last_error:-the drill stopped before its end (exit $status; the journal says why)}" || true
    ((status != 0)) || status=1
  fi
  [[ -z $work || ! -d $work ]] || rm -rf "$work"
  exit "$status"
}

load_credentials() {
  [[ -e $secrets/backupRepository && -e $secrets/backupPassword ]] ||
    exit_code=2 die "no backup target on this host ($secrets/backupRepository is missing): set blog:backupTarget and pulumi up"
  export RESTIC_REPOSITORY_FILE=$secrets/backupRepository RESTIC_PASSWORD_FILE=$secrets/backupPassword
  export RESTIC_CACHE_DIR=${RESTIC_CACHE_DIR:-/var/cache/restic-backups-blog}
  backup_load_environment "$secrets/backupEnvironment"
}

# snapshot_json ID: {id, time, paths} of ID ("latest": the newest of the tag).
snapshot_json() {
  local id=$1 out
  if [[ $id == latest ]]; then
    out=$(backup_latest_snapshot) || die "could not list the repository's snapshots (restic's message is above)"
    [[ -n $out ]] || exit_code=2 die "the repository holds no snapshot yet: nothing to restore"
  else
    out=$(backup_restic snapshots --json "$id" | jq -c 'if type == "array" and length == 1 then .[0] | {id, time, paths} else empty end') ||
      die "could not read snapshot $id (restic's message is above)"
    [[ -n $out ]] || exit_code=2 die "the repository has no snapshot $id (blog-backup snapshots lists them)"
  fi
  printf '%s\n' "$out"
}

# scratch_for: a directory for a restore, on the data volume when there is one
# (a rename away from its place), else under the state directory.
scratch_for() {
  local kind=$1
  if mountpoint -q "$data_mount"; then
    echo "$data_mount/.$kind-$stamp"
  else
    echo "$state_dir/$kind-$stamp"
  fi
}

# check_space DIR SNAPSHOT: the snapshot's restore size fits where DIR goes,
# with a tenth more and 1 MiB to spare.
check_space() {
  local dir=$1 id=$2 need avail
  need=$(backup_restic stats --json --mode restore-size "$id" | jq -r '.total_size // empty') || die "restic stats failed"
  [[ $need =~ ^[0-9]+$ ]] || die "restic stats gave no size for $id"
  avail=$(df --output=avail -B1 "$(dirname "$dir")" | tail -n 1 | tr -d ' ')
  ((avail > need + need / 10 + 1024 * 1024)) ||
    exit_code=2 die "$(dirname "$dir") has $avail bytes free and the snapshot needs $need bytes (and a tenth more to spare): free space or grow the volume (dataVolumeSize); nothing was changed"
}

cmd_status() {
  local f
  for f in "$state_dir/status.json" "$state_dir/drill.json"; do
    if [[ -s $f ]]; then cat "$f"; else echo "{\"file\":\"$f\",\"result\":null}"; fi
  done
}

cmd_snapshots() {
  load_credentials
  backup_restic snapshots --tag "${BLOG_BACKUP_TAG:-blog}"
}

# move_aside PATH ASIDE: the content of PATH (all entries but lost+found and
# what earlier restores and drills left) into ASIDE, by rename.
move_aside() {
  local path=$1 aside=$2 entry name
  install -d -m 700 "$aside"
  for entry in "$path"/*; do
    name=${entry##*/}
    case $name in
    lost+found | .before-restore-* | .restore-* | .drill-*) continue ;;
    esac
    mv -- "$entry" "$aside/" || die "could not move $entry to $aside; the content moved so far is in $aside"
  done
}

cmd_restore() {
  local id=${1:-latest} snapshot paths path staged aside entry staging units=() kept=()
  [[ $id == latest || $id =~ ^[0-9a-f]{8,64}$ ]] || exit_code=2 die "'$id' is not a snapshot id (8 to 64 hex digits) or latest"
  load_credentials
  snapshot=$(snapshot_json "$id")
  id=$(jq -r .id <<<"$snapshot")
  mapfile -t paths < <(jq -r '.paths[]' <<<"$snapshot")
  echo "restoring snapshot ${id:0:8} of $(jq -r .time <<<"$snapshot"): ${paths[*]}"
  staging=$(scratch_for restore)
  check_space "$staging" "$id"
  install -d -m 700 "$staging"
  # Into the scratch directory first, the services still running: a failed
  # download changes nothing.
  if ! backup_restic restore "$id" --target "$staging"; then
    rm -rf "$staging"
    die "restic restore failed (its message is above); nothing was changed"
  fi
  # From here a failure leaves every piece where the message says: nothing is deleted.
  trap cleanup EXIT
  stopped_file=$(mktemp)
  mapfile -t units < <(backup_data_units restore)
  ((${#units[@]} == 0)) || backup_stop_units "$stopped_file" "${units[@]}"
  for path in "${paths[@]}"; do
    staged=$staging$path
    [[ -d $staged ]] || { echo "warning: $path is not in the restored tree; left as it is" >&2; continue; }
    if [[ $path == "$data_mount" ]]; then
      aside=$data_mount/.before-restore-$stamp
      move_aside "$data_mount" "$aside"
      for entry in "$staged"/*; do
        mv -- "$entry" "$data_mount/" || die "could not move $entry into $data_mount: the previous content is in $aside, the rest of the snapshot in $staged"
      done
    else
      aside=$path.before-restore-$stamp
      if [[ -e $path ]]; then mv -T -- "$path" "$aside"; fi
      mkdir -p "$(dirname "$path")"
      mv -T -- "$staged" "$path" || die "could not move $staged to $path: the previous content is in $aside"
    fi
    kept+=("$aside")
    echo "restored $path; its previous content is in $aside"
  done
  rm -rf "$staging"
  echo "restore of ${id:0:8} done. Once the site is confirmed, delete the previous content: rm -rf ${kept[*]}"
}

# compare RESTORED SNAPSHOT_EPOCH PATH...: files of the snapshot against the
# live ones. A file whose live copy has the same modification time but other
# bytes, and a live file older than the snapshot missing from it, are
# mismatches (printed, counted in `mismatches`); live files changed or added
# since the snapshot are expected (counted in `changed`).
compare() {
  local root=$1 epoch=$2 path rel live restored
  shift 2
  compared=0 changed=0 mismatches=0
  for path in "$@"; do
    [[ -d $root$path ]] || continue
    while IFS= read -r -d '' rel; do
      restored=$root$path/$rel
      live=$path/$rel
      compared=$((compared + 1))
      if [[ ! -e $live && ! -L $live ]]; then
        changed=$((changed + 1))
      elif [[ -L $restored ]]; then
        [[ -L $live && $(readlink "$live") == "$(readlink "$restored")" ]] || changed=$((changed + 1))
      elif [[ $(stat -c %Y "$live") != "$(stat -c %Y "$restored")" ]]; then
        changed=$((changed + 1))
      elif ! cmp -s -- "$restored" "$live"; then
        echo "mismatch: $live has the snapshot's modification time but other content" >&2
        mismatches=$((mismatches + 1))
      fi
    done < <(find "$root$path" \( -type f -o -type l \) -printf '%P\0')
    while IFS= read -r -d '' rel; do
      [[ -e $root$path/$rel || -L $root$path/$rel ]] && continue
      if (($(stat -c %Y "$path/$rel") < epoch)); then
        echo "mismatch: $path/$rel is older than the snapshot but not in it" >&2
        mismatches=$((mismatches + 1))
      fi
    done < <(cd "$path" && find . \( -path ./lost+found -o -path './.before-restore-*' -o -path './.restore-*' -o -path './.drill-*' -o -path './.failed-restore-*' \) -prune -o \( -type f -o -type l \) -printf '%P\0')
  done
}

cmd_drill() {
  local snapshot id time epoch paths detail
  drill_written=no
  trap cleanup EXIT
  load_credentials
  snapshot=$(snapshot_json latest)
  id=$(jq -r .id <<<"$snapshot")
  time=$(jq -r .time <<<"$snapshot")
  epoch=$(date -d "$time" +%s)
  mapfile -t paths < <(jq -r '.paths[]' <<<"$snapshot")
  work=$(scratch_for drill)
  check_space "$work" "$id"
  install -d -m 700 "$work"
  echo "drill: restoring snapshot ${id:0:8} of $time (${paths[*]}) into $work"
  # --no-cache: every tree and data pack comes from the repository, none from this host's cache.
  if ! backup_restic --no-cache restore "$id" --target "$work" --verify; then
    drill_result failed "restoring snapshot ${id:0:8} failed: the repository did not give back its data (restic's message is above)"
    return 1
  fi
  compare "$work" "$epoch" "${paths[@]}"
  detail="snapshot ${id:0:8} of $time: $compared files restored; $changed changed or gone since it was taken; $mismatches mismatches"
  if ((mismatches > 0 || compared == 0)); then
    ((compared > 0)) || detail="snapshot ${id:0:8} of $time restored no file"
    drill_result failed "$detail"
    return 1
  fi
  drill_result success "$detail"
}

# drill_result RESULT DETAIL: drill.json, and the line the journal keeps.
drill_result() {
  drill_written=yes
  backup_write_status "$state_dir/drill.json" "$(jq -cn --arg result "$1" --arg time "$(backup_now)" --arg detail "$2" \
    '{unit: "blog-backup-drill", result: $result, time: $time, detail: $detail}')"
  echo "drill: $1: $2"
}

main() {
  local verb=${1:-}
  shift || true
  case $verb in
  status) cmd_status ;;
  snapshots) cmd_snapshots ;;
  restore) cmd_restore "$@" ;;
  drill) cmd_drill ;;
  *) exit_code=2 die "usage: blog-backup status | snapshots | restore [SNAPSHOT] | drill" ;;
  esac
}

main "$@"
