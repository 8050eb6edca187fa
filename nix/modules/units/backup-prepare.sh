# shellcheck shell=bash
# The backup job's prepare hook (services.restic.backups.blog.backupPrepareCommand,
# nix/modules/backup.nix), run before restic copies anything:
#   1. the repository: opened, or created when there is none yet (never on
#      any other error: a wrong password must not start a second repository);
#   2. blog.backup.dumpCommand, if the host file sets one (a database dump
#      while its service still runs: BLOG_BACKUP_DUMP);
#   3. the services that write the data stop, for the copy only: the units
#      that need the data volume (the rule of scripts/data-backup.sh) and
#      the owners of the state directories. They are recorded in the unit's
#      runtime directory, and the cleanup hook starts them again on every
#      exit path (ExecStopPost=).
# Environment: as backup-lib.sh says, and RUNTIME_DIRECTORY (systemd's, the
# job's RuntimeDirectory=), BLOG_BACKUP_LIB (backup-lib.sh).
set -euo pipefail
# shellcheck source=nix/modules/units/backup-lib.sh
source "${BLOG_BACKUP_LIB:?}"

ensure_repository() {
  local state
  state=$(backup_repository_state)
  case $state in
  ok) echo "repository: open" ;;
  missing)
    echo "repository: none there yet; creating it"
    backup_restic init
    ;;
  *)
    echo "error: the repository cannot be opened ($state): nothing was stopped, nothing copied" >&2
    return 1
    ;;
  esac
}

stop_writers() {
  local units=()
  mapfile -t units < <(backup_data_units copy)
  if ((${#units[@]} == 0)); then
    : >"$RUNTIME_DIRECTORY/stopped"
    echo "no unit writes the data: nothing to stop"
    return 0
  fi
  backup_stop_units "$RUNTIME_DIRECTORY/stopped" "${units[@]}"
}

main() {
  ensure_repository
  if [[ -n ${BLOG_BACKUP_DUMP:-} ]]; then
    "$BLOG_BACKUP_DUMP" || {
      echo "error: the dump command (blog.backup.dumpCommand) failed: nothing was stopped, nothing copied" >&2
      return 1
    }
  fi
  stop_writers
}

main "$@"
