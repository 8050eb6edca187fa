#!/usr/bin/env bash
# The host's backups, from where you run Pulumi: each verb logs in to the
# stack's host (pinned host key, the deploy's login) and runs the host's own
# `blog-backup` command or unit (nix/modules/backup.nix), which holds the
# repository's credentials; nothing secret travels or is printed here.
#
#   backup.sh status              the last backup's and the last drill's result
#                                 (/var/lib/blog-backup/*.json on the host)
#   backup.sh snapshots           the repository's snapshots
#   backup.sh run                 a backup now (restic-backups-blog.service);
#                                 exits 4 when it fails
#   backup.sh drill               the restore drill now (blog-backup-drill.service):
#                                 the newest snapshot into a scratch directory,
#                                 compared with the live data; exits 4 when it fails
#   backup.sh restore [SNAPSHOT]  restores SNAPSHOT (default: the newest) onto
#                                 the host in place: the services that write the
#                                 data stop, the current content is moved aside
#                                 (/data/.before-restore-<time>/, never deleted),
#                                 the snapshot's content takes its place, the
#                                 services start again. It runs in a transient
#                                 unit on the host: a dropped connection does
#                                 not stop it half-way.
#
# After a total loss: a new stack with the same backup target and
# blog:backupPassword set to the old stack's password (docs/operations.md, Backups),
# `pulumi up`, then `backup.sh restore`.
#
# Input from the environment, as scripts/data-backup.sh: TARGET_HOST and
# HOST_KEY (else `pulumi stack output`: ipv4 or ipv6, hostKey), TARGET_PORT
# (22), TARGET_USER (root), SSH_PRIVATE_KEY (else ssh-agent),
# CONNECT_ATTEMPTS (30), CONNECT_TIMEOUT (120 s), BACKUP_TIMEOUT (21600 s:
# a run, drill or restore).
# Exit codes: 0 done; 1 bad input; 2 refused, nothing changed (unreachable,
# another host key, no backup target on the host, no such snapshot, not
# enough space); 4 failed (a backup, drill or restore that failed: the
# message says what the host holds).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/common.sh
source "$script_dir/lib/common.sh"
# shellcheck source=scripts/lib/stack-outputs.sh
source "$script_dir/lib/stack-outputs.sh"

verb=""
snapshot=latest
work_dir=""
identity_opts=()
ssh_opts=()

parse_command() {
  case ${1:-} in
  status | snapshots | run | drill | restore) verb=$1 ;;
  -h | --help) parse_args "${BASH_SOURCE[0]}" --help ;;
  "") abort "$EXIT_BAD_INPUT" "a verb is required: status, snapshots, run, drill or restore [SNAPSHOT] (see --help)" ;;
  *) abort "$EXIT_BAD_INPUT" "unknown verb '$1'; expected status, snapshots, run, drill or restore [SNAPSHOT] (see --help)" ;;
  esac
  shift
  if [[ $verb == restore && $# -gt 0 ]]; then
    snapshot=$1
    shift
    [[ $snapshot == latest || $snapshot =~ ^[0-9a-f]{8,64}$ ]] ||
      abort "$EXIT_BAD_INPUT" "SNAPSHOT='$snapshot' is not valid; expected a snapshot id (8 to 64 hex digits, \`backup.sh snapshots\` lists them) or latest"
  fi
  (($# == 0)) || abort "$EXIT_BAD_INPUT" "unexpected argument '$1'; the target comes from environment variables (see --help)"
}

cleanup() {
  local status=$?
  [[ -z $work_dir ]] || rm -rf "$work_dir"
  exit "$status"
}

parse_inputs() {
  begin_input_checks
  require_set TARGET_HOST
  require_set HOST_KEY
  TARGET_PORT=${TARGET_PORT:-22}
  TARGET_USER=${TARGET_USER:-root}
  CONNECT_ATTEMPTS=${CONNECT_ATTEMPTS:-30}
  CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-120}
  BACKUP_TIMEOUT=${BACKUP_TIMEOUT:-21600}
  require_uint TARGET_PORT 1
  require_uint CONNECT_ATTEMPTS 1
  require_uint CONNECT_TIMEOUT 1
  require_uint BACKUP_TIMEOUT 1
  [[ -z ${HOST_KEY:-} ]] || require_host_key HOST_KEY
  [[ -z ${TARGET_HOST:-} || $TARGET_HOST =~ ^[A-Za-z0-9._:%]([A-Za-z0-9._:%-]*)$ ]] ||
    bad_input "TARGET_HOST='$TARGET_HOST' is not valid; expected an address or host name"
  [[ $TARGET_USER =~ ^[A-Za-z0-9._][A-Za-z0-9._-]*$ ]] ||
    bad_input "TARGET_USER='$TARGET_USER' is not valid; expected a user name"
  end_input_checks
}

connect() {
  local status=0
  identity_options identity_opts SSH_PRIVATE_KEY "$work_dir/id_admin"
  write_known_hosts "$work_dir/known_hosts" "$HOST_KEY"
  pinned_ssh_options ssh_opts "$work_dir/known_hosts"
  ssh_opts+=(-o ControlMaster=no -o ControlPath=none -o ServerAliveInterval=15 -o ServerAliveCountMax=4 "${identity_opts[@]}")
  step "$verb: connecting to $(target_address) port $TARGET_PORT (pinned host key $(fingerprint "$HOST_KEY"))"
  wait_for_ssh "$verb" "${ssh_opts[@]}" "$(target_address)" true || status=$?
  ((status != 10)) ||
    abort "$EXIT_REFUSED" "$verb: $(target_address) port $TARGET_PORT presents a host key other than the pinned HOST_KEY $(fingerprint "$HOST_KEY"); nothing was changed"
}

# on_host SCRIPT: runs SCRIPT (fixed text, values checked above) in one
# bounded session; its exit status.
on_host() {
  local status=0
  progress_start "$verb on the host"
  timeout "$BACKUP_TIMEOUT" ssh "${ssh_opts[@]}" "$(target_address)" "$1" </dev/null || status=$?
  progress_stop
  return "$status"
}

# The host side, one script per verb. blog-backup exits 2 when the host has no
# backup target or the input is refused, 1 when a restore or drill failed.
# shellcheck disable=SC2016 # expanded by the host's shell
readonly HOST_PREAMBLE='set -uo pipefail
tool=$(command -v blog-backup) || tool=/run/current-system/sw/bin/blog-backup
[ -x "$tool" ] || { echo "error: this host has no blog-backup command: its system predates backups (pulumi up first)" >&2; exit 2; }
status() { "$tool" status; }'

run_verb() {
  local script status=0
  case $verb in
  status) script="$HOST_PREAMBLE
status" ;;
  snapshots) script="$HOST_PREAMBLE
\"\$tool\" snapshots" ;;
  run) script="$HOST_PREAMBLE
[ -e /var/lib/blog-secrets/backupRepository ] || { echo \"error: no backup target on this host: set blog:backupTarget and pulumi up\" >&2; exit 2; }
if systemctl start restic-backups-blog.service; then status; else status; journalctl -u restic-backups-blog.service -n 30 --no-pager -o cat >&2; exit 1; fi" ;;
  drill) script="$HOST_PREAMBLE
[ -e /var/lib/blog-secrets/backupRepository ] || { echo \"error: no backup target on this host: set blog:backupTarget and pulumi up\" >&2; exit 2; }
if systemctl start blog-backup-drill.service; then status; else journalctl -u blog-backup-drill.service -n 30 --no-pager -o cat >&2; status; exit 1; fi" ;;
  restore) script="$HOST_PREAMBLE
exec systemd-run --quiet --wait --pipe --collect --unit=blog-backup-restore-\$(date -u +%Y%m%dT%H%M%SZ) \"\$tool\" restore $snapshot" ;;
  esac
  step "$verb: on $(target_address)"
  on_host "$script" || status=$?
  case $status in
  0) step "$verb: done" ;;
  2) exit "$EXIT_REFUSED" ;; # the host said why
  124) abort "$EXIT_UNKNOWN" "$verb: gave up after ${BACKUP_TIMEOUT}s (BACKUP_TIMEOUT); it goes on on the host: backup.sh status tells how it ended" ;;
  *) abort "$EXIT_UNKNOWN" "$verb failed on the host (exit $status; its messages are above)" ;;
  esac
}

main() {
  parse_command "$@"
  install_exit_traps cleanup
  make_work_dir
  read_stack_outputs
  parse_inputs
  connect
  run_verb
}

main "$@"
