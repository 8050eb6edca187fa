#!/usr/bin/env bash
# Puts the host's data volume (a Hetzner Volume, ext4 labelled DATA_LABEL,
# mounted at DATA_MOUNT by the NixOS configuration) into use after it is
# attached, and out of use before it is detached:
#
#   data-volume.sh attach    after the attach: waits for DATA_DEVICE, checks its
#                            file system, labels an unlabelled ext4 one, mounts
#                            it at DATA_MOUNT and starts what could not start
#                            without it (when the running system does not
#                            mount DATA_MOUNT yet, it only labels: the deploy
#                            brings the configuration that mounts it); a
#                            mounted file system smaller than the volume (a
#                            bigger dataVolumeSize) grows online (resize2fs)
#   data-volume.sh release   before the detach, on the server it leaves: stops
#                            what uses DATA_MOUNT, unmounts it, syncs
#
# It never formats a volume: Hetzner formats a new one once (format: ext4).
# After the wait for SSH, each verb is one SSH session (a script on stdin).
#
# Input (environment; secrets only here, never arguments): TARGET_HOST,
# TARGET_PORT (22), TARGET_USER (root), HOST_KEY (the pinned host key line),
# SSH_PRIVATE_KEY (else ssh-agent), CONNECT_ATTEMPTS (30), CONNECT_TIMEOUT
# (120 s), DATA_DEVICE (/dev/disk/by-id/scsi-0HC_Volume_<id>), DATA_LABEL
# (blog-data), DATA_MOUNT (/data), DEVICE_TIMEOUT (60 s: the device and its
# udev links to appear), START_TIMEOUT (300 s: each systemctl start or stop).
# Exit codes: 0 done (release also when the server did not answer within
# CONNECT_TIMEOUT: it warns and leaves the volume to be detached), 1 bad
# input, 2 refused without changing anything (attach: no device, no file
# system, another file system or label, DATA_MOUNT holds another device;
# release: the server answers with another host key or refuses our key, or
# the file system is busy; attach: unreachable), 4 failed after a change or
# state unknown: an operator must look.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/common.sh
source "$script_dir/lib/common.sh"
# shellcheck source=scripts/lib/data-target.sh
source "$script_dir/lib/data-target.sh"

verb=""
work_dir=""
identity_opts=()
ssh_opts=()

parse_verb() {
  case ${1:-} in
  attach | release) verb=$1 ;;
  -h | --help) parse_args "${BASH_SOURCE[0]}" --help ;;
  "") abort "$EXIT_BAD_INPUT" "a verb is required: attach or release (see --help)" ;;
  *) abort "$EXIT_BAD_INPUT" "unknown verb '$1'; expected attach or release (see --help)" ;;
  esac
}

parse_inputs() {
  begin_input_checks
  require_set TARGET_HOST
  require_set HOST_KEY
  require_set DATA_DEVICE
  TARGET_PORT=${TARGET_PORT:-22}
  TARGET_USER=${TARGET_USER:-root}
  CONNECT_ATTEMPTS=${CONNECT_ATTEMPTS:-30}
  CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-120}
  DATA_LABEL=${DATA_LABEL:-blog-data}
  DATA_MOUNT=${DATA_MOUNT:-/data}
  DEVICE_TIMEOUT=${DEVICE_TIMEOUT:-60}
  START_TIMEOUT=${START_TIMEOUT:-300}
  require_uint TARGET_PORT 1
  require_uint CONNECT_ATTEMPTS 1
  require_uint CONNECT_TIMEOUT 1
  require_uint DEVICE_TIMEOUT 1
  require_uint START_TIMEOUT 1
  [[ -z ${HOST_KEY:-} ]] || require_host_key HOST_KEY
  check_proxy_jump
  # Plain characters only: the values travel to the target in a script.
  [[ -z ${DATA_DEVICE:-} || $DATA_DEVICE =~ ^/dev/[A-Za-z0-9._:+@/-]+$ && $DATA_DEVICE != */../* ]] ||
    bad_input "DATA_DEVICE='$DATA_DEVICE' is not valid; expected a device path like /dev/disk/by-id/scsi-0HC_Volume_123"
  # ext4 labels are at most 16 bytes.
  [[ $DATA_LABEL =~ ^[A-Za-z0-9._-]{1,16}$ ]] ||
    bad_input "DATA_LABEL='$DATA_LABEL' is not valid; expected 1 to 16 letters, digits, '.', '_' or '-'"
  require_data_mount DATA_MOUNT
  end_input_checks
}

cleanup() {
  local status=$?
  [[ -z $work_dir ]] || rm -rf "$work_dir"
  exit "$status"
}

prepare_work_dir() {
  make_work_dir
  identity_options identity_opts SSH_PRIVATE_KEY "$work_dir/id_admin"
  write_known_hosts "$work_dir/known_hosts" "$HOST_KEY"
  pinned_ssh_options ssh_opts "$work_dir/known_hosts"
  ssh_opts+=("${identity_opts[@]}")
}

# Waits for SSH with the pinned key. attach: any failure is a refusal (exit 2,
# nothing changed). release: a server that does not answer may be off or gone
# already, and the detach is safe without it (see release_unreachable); one
# that answers with another key, or refuses ours, is a refusal.
connect() {
  local status=0 log=$work_dir/connect.log
  step "$verb: connecting to $(target_address) port $TARGET_PORT (pinned host key $(fingerprint "$HOST_KEY"))"
  # Its progress shows as it comes; its final error line once it is known
  # whether that is an error.
  { wait_for_ssh "$verb" "${ssh_opts[@]}" "$(target_address)" true 2>&1 >&3 | tee "$log" | { grep -v '^error: ' || true; } >&2; } 3>&1 || status=$?
  ((status != 0)) || return 0
  if ((status == 10)); then
    abort "$EXIT_REFUSED" "$verb: $(target_address) port $TARGET_PORT presents a host key other than the pinned HOST_KEY $(fingerprint "$HOST_KEY"); nothing was changed"
  fi
  if [[ $verb == release ]] && ! grep -q 'refused our key' "$log"; then
    grep '^error: ' "$log" | sed 's/^error: /warning: /' >&2 || true
    release_unreachable
  fi
  grep '^error: ' "$log" >&2 || true
  exit "$EXIT_REFUSED"
}

release_unreachable() {
  warn "release: $(target_address) port $TARGET_PORT did not answer within CONNECT_TIMEOUT=${CONNECT_TIMEOUT}s (CONNECT_ATTEMPTS=$CONNECT_ATTEMPTS): the server may already be off or gone."
  warn "release: its services were NOT stopped and $DATA_MOUNT was NOT unmounted; the volume is left to be detached as it is."
  warn "release: this is safe: a Hetzner volume is attached to one server at a time, so the detach cannot leave two servers writing to it."
  warn "release: if the file system was still mounted, it was not unmounted cleanly; ext4 replays its journal the next time it is mounted (writes of the last seconds may be lost)."
  exit 0
}

# ---------------------------------------------------------------------------
# The target side: these functions are sent to the target (declare -f) and run
# there in one `bash -s`, with the values as arguments. They exit with
# EXIT_REFUSED before changing anything, EXIT_UNKNOWN after a change failed.

# The shared ones (on_target_refuse, on_target_fail, on_target_devnum,
# on_target_mounted_at, on_target_mounts_of, on_target_holders,
# on_target_stop_units) are in lib/data-target.sh.

# on_target_wait_for_device DEVICE TIMEOUT: udev makes the by-id link some
# time after the attach.
on_target_wait_for_device() {
  local device=$1 timeout=$2 deadline=$((SECONDS + $2))
  until [[ -b $device ]]; do
    if ((SECONDS >= deadline)); then
      on_target_refuse "$device did not appear within ${timeout}s (DEVICE_TIMEOUT): is the volume attached to this server?"
    fi
    sleep 1
  done
  info "$device is here ($(readlink -f "$device"))"
}

# on_target_probe DEVICE: sets fs_type, fs_label and pt_type from blkid's
# low-level probe (the device itself, not blkid's cache).
fs_type="" fs_label="" pt_type=""
on_target_probe() {
  local device=$1 status=0 out line
  out=$(blkid -p -o export "$device") || status=$?
  case $status in
  0 | 2) ;; # 2: nothing found
  8) on_target_refuse "blkid finds more than one signature on $device (ambivalent); look at them with 'wipefs --no-act $device'." ;;
  *) on_target_refuse "blkid could not read $device (exit $status)." ;;
  esac
  while IFS= read -r line; do
    case $line in
    TYPE=*) fs_type=${line#TYPE=} ;;
    LABEL=*) fs_label=${line#LABEL=} ;;
    PTTYPE=*) pt_type=${line#PTTYPE=} ;;
    esac
  done <<<"$out"
}

# on_target_check_fs DEVICE LABEL MOUNT: prints "ok" or "label"; refuses
# anything else. Never formats.
on_target_check_fs() {
  local device=$1 label=$2 mount_point=$3
  on_target_probe "$device"
  if [[ -z $fs_type ]]; then
    on_target_refuse "$device has no file system (blkid found none${pt_type:+; it holds a $pt_type partition table})." \
      "This script never formats a volume: Hetzner formats a new one once (the stack creates it with format: ext4)." \
      "If this volume is new and certainly empty, format it yourself (mkfs.ext4 -L $label $device) and run attach again; otherwise attach the volume that holds the data."
  fi
  if [[ $fs_type != ext4 ]]; then
    local labelled=""
    [[ -z $fs_label ]] || labelled=" labelled '$fs_label'"
    on_target_refuse "$device holds a $fs_type file system$labelled, not ext4: the host mounts only ext4 labelled '$label' at $mount_point." \
      "To use its data, copy it to an ext4 volume; never reformat a volume that holds data."
  fi
  if [[ -n $fs_label && $fs_label != "$label" ]]; then
    on_target_refuse "$device holds an ext4 file system labelled '$fs_label', not '$label': it may be another host's data." \
      "If it is this host's data volume, label it yourself (e2label $device $label) and run attach again; otherwise attach the right volume."
  fi
  if [[ -z $fs_label ]]; then echo label; else echo ok; fi
}

on_target_attach() {
  local device=$1 label=$2 mount_point=$3 device_timeout=$4 start_timeout=$5
  local systemd=0 unit="" action devnum mounted by_label did=()
  [[ -d /run/systemd/system ]] && systemd=1
  on_target_wait_for_device "$device" "$device_timeout"
  devnum=$(on_target_devnum "$device")

  # Every check first; then the changes.
  action=$(on_target_check_fs "$device" "$label" "$mount_point")
  by_label=/dev/disk/by-label/$label
  if [[ -e $by_label && $(on_target_devnum "$by_label") != "$devnum" ]]; then
    on_target_refuse "$by_label already names another device, $(readlink -f "$by_label"): two file systems labelled '$label' on one host; detach one of them."
  fi
  mounted=$(on_target_mounted_at "$mount_point")
  if [[ -n $mounted && $mounted != "$devnum" ]]; then
    on_target_refuse "$mount_point already holds another file system (device $mounted, $(findmnt -n -o SOURCE --mountpoint "$mount_point" | tail -n 1)), not $device."
  fi
  if ((systemd)); then
    unit=$(systemd-escape --path --suffix=mount "$mount_point")
    # The running system may not mount it yet: a volume added to a running
    # stack comes with the configuration that mounts it, which the deploy
    # after this activates (the services that need the volume then pull its
    # mount in: Requires= from RequiresMountsFor=). Label it; mount nothing.
    [[ $(systemctl show -p LoadState --value "$unit") == loaded ]] || unit=""
  fi
  if [[ $action == label ]]; then
    command -v e2label >/dev/null || on_target_refuse "$device is an unlabelled ext4 file system and e2label is not installed to label it."
  fi

  if [[ $action == label ]]; then
    # Writes the label into the superblock, nothing else.
    e2label "$device" "$label" || on_target_fail "e2label $device $label failed"
    did+=("labelled the unlabelled ext4 file system '$label'")
    info "labelled $device '$label'"
  else
    info "$device holds ext4 labelled '$label' already"
  fi

  if ((systemd)) && [[ -z $unit ]]; then
    info "the running system has no mount unit for $mount_point; the deploy brings the configuration that mounts it (blog.host.dataVolume)"
  elif ((systemd)); then
    on_target_start_systemd "$device" "$label" "$mount_point" "$unit" "$device_timeout" "$start_timeout" "$mounted"
  elif [[ -n $mounted ]]; then
    info "$mount_point is mounted from $device already"
  else
    mkdir -p "$mount_point"
    mount -t ext4 "$device" "$mount_point" || on_target_fail "mounting $device at $mount_point failed"
    did+=("mounted it at $mount_point")
    info "mounted $device at $mount_point"
  fi
  [[ -z $(on_target_mounted_at "$mount_point") ]] || on_target_grow "$device"
  if ((${#did[@]} == 0)); then
    info "attach: nothing to do: $device is ext4 labelled '$label' and mounted at $mount_point"
  else
    local summary
    summary=$(printf '; %s' "${did[@]}")
    info "attach: $device: ${summary#; }"
  fi
}

# A volume grown at Hetzner (a bigger dataVolumeSize) is seen at its new size once
# the kernel rescans the SCSI device (Hetzner's docs: resize, then resize2fs);
# the mounted ext4 file system then grows online to fill it. resize2fs says
# "Nothing to do" when it already does.
on_target_grow() {
  local device=$1 real out
  real=$(readlink -f "$device")
  if [[ -w /sys/class/block/${real##*/}/device/rescan ]]; then
    echo 1 >"/sys/class/block/${real##*/}/device/rescan" || true
  fi
  if ! command -v resize2fs >/dev/null; then
    info "resize2fs is not installed: the file system keeps its size"
    return 0
  fi
  # Not fatal: the data is intact either way, and the mount grows the file
  # system at the next boot (x-systemd.growfs, nix/modules/data.nix).
  if ! out=$(resize2fs "$device" 2>&1); then
    printf 'warning: %s\n' "could not grow the file system on $device online ($(tail -n 1 <<<"$out")); it keeps its size until the next boot grows it" >&2
    return 0
  fi
  if [[ $out != *"Nothing to do"* ]]; then
    did+=("grew the file system to the volume's size")
    info "grew the file system on $device to the volume's size"
  fi
}

# With systemd: udev links by-label once it sees the label; the mount unit
# (from the NixOS fileSystems entry, nofail) then mounts it; and what could not
# start without it starts.
#
# Which units to start: a unit with RequiresMountsFor=DATA_MOUNT has Requires=
# and After= on the mount unit (systemd.unit(5), RequiresMountsFor=). When the
# mount failed at boot (no volume yet), their start jobs failed with result
# "dependency": they stay inactive, not failed, so restarting the failed units
# would miss them. Starting default.target instead enqueues a start for every
# unit the boot wanted and that is not running, and only those: what boot
# would have reached with the volume there (timer-driven services wait for
# their timers; nothing the boot does not start is started).
on_target_start_systemd() {
  local device=$1 label=$2 mount_point=$3 unit=$4 device_timeout=$5 start_timeout=$6 mounted=$7
  local by_label=/dev/disk/by-label/$2 deadline failed
  udevadm trigger --action=change "$(readlink -f "$device")" || true
  udevadm settle --timeout="$device_timeout" || true
  deadline=$((SECONDS + device_timeout))
  until [[ -e $by_label && $(on_target_devnum "$by_label") == "$(on_target_devnum "$device")" ]]; do
    ((SECONDS < deadline)) || on_target_fail "$by_label did not appear for $device within ${device_timeout}s (DEVICE_TIMEOUT)"
    sleep 1
  done
  if [[ -z $mounted ]]; then
    timeout "$start_timeout" systemctl start "$unit" ||
      on_target_fail "systemctl start $unit failed (exit $?): $(systemctl status --no-pager --lines=5 "$unit" 2>&1 | tail -n 5)"
    did+=("mounted it at $mount_point ($unit)")
    info "mounted $device at $mount_point ($unit)"
  else
    info "$mount_point is mounted from $device already ($unit)"
  fi
  if timeout "$start_timeout" systemctl start default.target; then
    info "started default.target: every unit the boot wants runs"
  else
    failed=$(systemctl list-units --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')
    printf 'warning: systemctl start default.target failed; failed units: %s\n' "${failed:-none}" >&2
  fi
  [[ -n $mounted ]] || did+=("started what waited for it (default.target)")
}

on_target_release() {
  local device=$1 label=$2 mount_point=$3 device_timeout=$4 start_timeout=$5
  local systemd=0 devnum="" mounted others
  [[ -d /run/systemd/system ]] && systemd=1
  [[ -b $device ]] && devnum=$(on_target_devnum "$device")
  mounted=$(on_target_mounted_at "$mount_point")

  # Checks first. Without systemd the device must not be mounted anywhere but
  # at DATA_MOUNT. With systemd it is, by design: the state directories are
  # bind mounts of the same device (nix/modules/data.nix), which the mount
  # unit's stop takes down first (a bind mount requires the mount of its
  # source: RequiresMountsFor= on What=, systemd.mount(5)); what is left
  # after the stop is checked there.
  if [[ -z $devnum ]]; then
    info "$device is not on this server (detached already?)"
  elif ((!systemd)); then
    others=$(on_target_mounts_of "$devnum" | grep -vxF "$mount_point" | tr '\n' ' ' || true)
    [[ -z $others ]] ||
      on_target_refuse "$device is also mounted at $others(not by this host's configuration); unmount it there first."
  fi

  if [[ -z $mounted ]]; then
    info "release: $mount_point is not mounted: nothing to stop"
  elif [[ -n $devnum && $mounted != "$devnum" ]]; then
    info "release: $mount_point holds another device ($mounted), not $device: left alone"
  elif ((systemd)); then
    on_target_stop_systemd "$mount_point" "$start_timeout" "$devnum" "$device"
  else
    sync
    umount "$mount_point" ||
      on_target_refuse "$mount_point is busy and stays mounted (processes using it: $(on_target_holders "$mount_point")); stop them and run release again."
    info "unmounted $mount_point"
  fi
  sync
  info "release: $device is out of use${mounted:+ and unmounted}, file systems synced: it can be detached"
}

# Stopping the mount unit stops every unit that needs it: "this unit will be
# stopped (or restarted) if one of the other units is explicitly stopped"
# (systemd.unit(5), Requires=), and RequiresMountsFor= adds Requires= and
# After= on the mount units of the path (same page); they stop first (After=).
# If the unmount still fails (a process outside those units holds it), the
# units the stop took down are started again, and nothing has changed.
# Not prevented: a timer starting a service that needs DATA_MOUNT between this
# and the detach would mount it again; the detach then leaves an unclean file
# system, which ext4's journal recovers on the next mount.
on_target_stop_systemd() {
  local mount_point=$1 start_timeout=$2 devnum=${3:-} device=${4:-the volume} unit stopped left=""
  unit=$(systemd-escape --path --suffix=mount "$mount_point")
  stopped=$(on_target_stop_units "$start_timeout" "$unit" | grep -vxF "$unit" | tr '\n' ' ' || true)
  [[ -z $devnum ]] || left=$(on_target_mounts_of "$devnum" | tr '\n' ' ' || true)
  stopped=${stopped% }
  left=${left% }
  [[ -z $(on_target_mounted_at "$mount_point") ]] || left="$mount_point${left:+ $left}"
  if [[ -n $left ]]; then
    local holders="" where
    for where in $left; do
      holders+="${holders:+, }$where: $(on_target_holders "$where")"
    done
    # Back as it was: the mount unit itself (the units below may not pull it
    # in), then what the stop took down.
    # shellcheck disable=SC2086 # one unit name a word
    timeout "$start_timeout" systemctl start "$unit" $stopped ||
      on_target_fail "$device is still mounted at $left (processes using it: $holders), and starting again $unit${stopped:+ and $stopped} failed"
    on_target_refuse "$device is still mounted at $left (processes using it: $holders); $unit${stopped:+ and the units the stop took down ($stopped)} were started again; stop those processes and run release again."
  fi
  info "stopped $unit${stopped:+ and what needed it: $stopped}"
}

# The functions above, sent to the target.
readonly on_target_functions=(
  "${data_target_functions[@]}" on_target_wait_for_device on_target_probe on_target_check_fs
  on_target_attach on_target_grow on_target_start_systemd on_target_release on_target_stop_systemd
)

# ---------------------------------------------------------------------------

run_on_target() {
  local status=0 session_timeout=$((DEVICE_TIMEOUT * 3 + START_TIMEOUT * 3 + 120))
  step "$verb: $DATA_DEVICE ($DATA_LABEL at $DATA_MOUNT) on $(target_address)"
  # A script on stdin; the last line calls it, so nothing it runs can read
  # the script as its input.
  {
    echo 'set -euo pipefail'
    declare -p EXIT_REFUSED EXIT_UNKNOWN fs_type fs_label pt_type
    declare -f info "${on_target_functions[@]}"
    printf 'on_target_%s %q %q %q %q %q\n' "$verb" "$DATA_DEVICE" "$DATA_LABEL" "$DATA_MOUNT" "$DEVICE_TIMEOUT" "$START_TIMEOUT"
  } >"$work_dir/on-target.sh"
  # The host's messages reach our stderr as printable text only, all of them
  # before ours (the wait for the filter, a process substitution: $!).
  {
    timeout "$session_timeout" ssh "${ssh_opts[@]}" -o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 \
      "$(target_address)" 'bash -s' <"$work_dir/on-target.sh"
  } 2> >(sanitize_stream >&2) || status=$?
  [[ -z ${!-} ]] || wait "$!" 2>/dev/null || true
  case $status in
  0) step "$verb: done" ;;
  "$EXIT_REFUSED") exit "$EXIT_REFUSED" ;; # the target said why
  "$EXIT_UNKNOWN") exit "$EXIT_UNKNOWN" ;;
  124) abort "$EXIT_UNKNOWN" "$verb: gave up after ${session_timeout}s on $(target_address); the volume's state is unknown; an operator must look" ;;
  255) abort "$EXIT_UNKNOWN" "$verb: the SSH session to $(target_address) failed; the volume's state is unknown; an operator must look" ;;
  *) abort "$EXIT_UNKNOWN" "$verb: failed on $(target_address) (exit $status); the volume's state is unknown; an operator must look" ;;
  esac
}

main() {
  parse_verb "$@"
  shift
  parse_args "${BASH_SOURCE[0]}" "$@"
  parse_inputs
  hide_addresses
  install_exit_traps cleanup
  prepare_work_dir
  connect
  run_on_target
}

main "$@"
