# shellcheck shell=bash
# What data-volume.sh and data-backup.sh share about the data volume: the
# check of DATA_MOUNT, and the target-side functions both send to the target
# (declare -f, listed in data_target_functions) to run in one `bash` there.
# Sourced after common.sh (EXIT_REFUSED, EXIT_UNKNOWN, abort), never executed.

# require_data_mount NAME: the variable must be an absolute path other than /
# in plain characters: its value travels to the target inside a script.
require_data_mount() {
  local name=$1 value=${!1:-}
  [[ $value =~ ^(/[A-Za-z0-9._-]+)+$ && $value != */. && $value != */.. && $value != */./* && $value != */../* ]] ||
    bad_input "$name='$(shown "$value")' is not valid; expected an absolute path other than / like /data, without a trailing slash"
}

# ---------------------------------------------------------------------------
# The target side. They exit with EXIT_REFUSED before changing anything,
# EXIT_UNKNOWN after a change failed.

# on_target_refuse MESSAGE...: nothing was changed.
on_target_refuse() {
  printf 'error: refused: %s Nothing was changed.\n' "$*" >&2
  exit "$EXIT_REFUSED"
}

on_target_fail() {
  printf 'error: %s; an operator must look.\n' "$*" >&2
  exit "$EXIT_UNKNOWN"
}

# on_target_devnum PATH: MAJOR:MINOR of the block device PATH resolves to.
on_target_devnum() {
  printf '%d:%d\n' "0x$(stat -L -c %t "$1")" "0x$(stat -L -c %T "$1")"
}

# on_target_mounted_at PATH: MAJOR:MINOR of what is mounted at PATH ("" if nothing).
on_target_mounted_at() {
  findmnt -n -o MAJ:MIN --mountpoint "$1" | tail -n 1 | tr -d ' ' || true
}

# on_target_mounts_of MAJOR:MINOR: every mount point of that device.
on_target_mounts_of() {
  findmnt -l -n -o MAJ:MIN,TARGET | awk -v d="$1" '$1 == d {print $2}'
}

# on_target_holders PATH: processes with a file, directory or root under PATH.
on_target_holders() {
  local path=$1 pid link found=()
  for pid in /proc/[0-9]*; do
    for link in "$pid"/cwd "$pid"/root "$pid"/fd/*; do
      link=$(readlink "$link" 2>/dev/null) || continue
      if [[ $link == "$path" || $link == "$path"/* ]]; then
        found+=("${pid#/proc/} ($(cat "$pid/comm" 2>/dev/null))")
        break
      fi
    done
    ((${#found[@]} < 10)) || break
  done
  local IFS=,
  printf '%s\n' "${found[*]:-none found}"
}

# on_target_active_units: the active units, one a line, sorted.
on_target_active_units() {
  systemctl list-units --state=active --no-legend --plain | awk '{print $1}' | sort
}

# on_target_stop_units TIMEOUT UNIT...: one `systemctl stop` of the units,
# bounded by TIMEOUT seconds; prints, one a line, every unit that was active
# before and is not after: those named and whatever the stop took down with
# them (a unit that Requires= or BindsTo= a stopped one stops too,
# systemd.unit(5)). The stop's own status is not checked: the caller checks
# what it needs stopped.
on_target_stop_units() {
  local timeout=$1 before after
  shift
  before=$(on_target_active_units)
  timeout "$timeout" systemctl stop "$@" >&2 || true
  after=$(on_target_active_units)
  comm -23 <(printf '%s\n' "$before") <(printf '%s\n' "$after") || true
}

# The functions above, for the scripts' lists of what they send.
# shellcheck disable=SC2034 # used by the scripts that source this file
readonly data_target_functions=(
  on_target_refuse on_target_fail on_target_devnum on_target_mounted_at on_target_mounts_of
  on_target_holders on_target_active_units on_target_stop_units
)
