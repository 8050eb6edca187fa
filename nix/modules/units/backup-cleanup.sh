# shellcheck shell=bash
# The backup job's cleanup hook (services.restic.backups.blog.backupCleanupCommand,
# an ExecStopPost= step: it runs after the copy whatever its outcome):
#   1. the units the prepare hook stopped start again;
#   2. the status file, $BLOG_BACKUP_STATE/status.json, which other tools read:
#        {"result":"success"|"failed","time":<this run>,"detail":...,
#         "lastSuccess":<time>,"lastSnapshot":<id>}
#      lastSuccess and lastSnapshot stay from the last good run after a failure.
# A unit that does not start again fails the job too (exit 1), after the
# status is written. Environment: as backup-prepare.sh, and systemd's
# SERVICE_RESULT, EXIT_CODE, EXIT_STATUS (systemd.exec(5), ExecStopPost=).
set -euo pipefail
# shellcheck source=nix/modules/units/backup-lib.sh
source "${BLOG_BACKUP_LIB:?}"

status_file=${BLOG_BACKUP_STATE:-/var/lib/blog-backup}/status.json

write_status() {
  local now previous last_success last_snapshot snapshot result detail
  now=$(backup_now)
  previous='{}'
  [[ ! -s $status_file ]] || previous=$(jq -c 'if type == "object" then . else {} end' "$status_file" 2>/dev/null) || previous='{}'
  last_success=$(jq -r '.lastSuccess // ""' <<<"$previous")
  last_snapshot=$(jq -r '.lastSnapshot // ""' <<<"$previous")
  if [[ ${SERVICE_RESULT:-} == success && ${EXIT_STATUS:-0} == 0 ]]; then
    if snapshot=$(backup_latest_snapshot) && [[ -n $snapshot ]]; then
      result=success
      detail="snapshot $(jq -r .id <<<"$snapshot" | cut -c1-8)"
      last_snapshot=$(jq -r .id <<<"$snapshot")
      last_success=$(jq -r .time <<<"$snapshot")
    else
      result=failed
      detail="the backup ran, but the repository lists no snapshot of it"
    fi
  else
    result=failed
    detail="restic's job ended with ${SERVICE_RESULT:-unknown} (${EXIT_CODE:-?} ${EXIT_STATUS:-?}); journalctl -u restic-backups-blog says why"
  fi
  backup_write_status "$status_file" "$(jq -cn --arg result "$result" --arg time "$now" --arg detail "$detail" \
    --arg lastSuccess "$last_success" --arg lastSnapshot "$last_snapshot" \
    '{unit: "restic-backups-blog", result: $result, time: $time, detail: $detail,
      lastSuccess: (if $lastSuccess == "" then null else $lastSuccess end),
      lastSnapshot: (if $lastSnapshot == "" then null else $lastSnapshot end)}')"
  echo "backup: $result ($detail); last good backup: ${last_success:-never}"
}

main() {
  local status=0
  backup_start_units "$RUNTIME_DIRECTORY/stopped" || status=1
  write_status || status=1
  return "$status"
}

main "$@"
