#!/usr/bin/env bash
# The newest snapshot of the backup repository, asked of the repository
# itself where `pulumi` runs: the program runs this at every preview and
# update (src/backup.ts, a command:local:run invoke), with no SSH key and no
# host. It prints one JSON line and always exits 0:
#   {"state":"snapshot","id":"<64 hex>","time":"<restic's time>","paths":[...]}
#   {"state":"empty"}                          the repository holds no snapshot, or is not there yet
#   {"state":"unknown","reason":"<why>"}       restic missing, wrong password, unreachable, ...
#
# Input, from the environment only (the credentials never reach argv):
# RESTIC_REPOSITORY, RESTIC_PASSWORD; for sftp: BLOG_BACKUP_SFTP_{USER,HOST,
# PORT,HOST_KEY,PASSWORD}; for s3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# BLOG_BACKUP_S3_REGION. BACKUP_STATUS_TIMEOUT (60 s) bounds restic.
# Nothing it prints holds a credential: restic's messages are reduced to a
# fixed reason.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  cat "$script_dir/help/backup-status.txt"
  exit 0
fi
# shellcheck source=nix/modules/units/backup-lib.sh
source "$script_dir/../nix/modules/units/backup-lib.sh"

# restic, bounded: the preview waits for it.
backup_restic() {
  timeout "${BACKUP_STATUS_TIMEOUT:-60}" restic -o "sftp.command=$BLOG_BACKUP_SFTP_COMMAND" -o "s3.region=${BLOG_BACKUP_S3_REGION:-}" "$@"
}

work=""
cleanup() {
  [[ -z $work ]] || rm -rf "$work"
}

say() {
  jq -cn "$@"
  exit 0
}

unknown() {
  # shellcheck disable=SC2016 # a jq variable
  say --arg reason "$1" '{state: "unknown", reason: $reason}'
}

# classify ERRFILE: a fixed reason for what restic said (its text may echo the repository).
classify() {
  local err=$1
  if ! grep -q '[^[:space:]]' "$err" 2>/dev/null; then
    echo "the backup target did not answer within ${BACKUP_STATUS_TIMEOUT:-60}s"
  elif grep -qiE 'wrong password|no key found' "$err"; then
    echo "the repository did not accept the password (blog:backupPassword, or the stack's generated one)"
  elif grep -qiE 'Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED' "$err"; then
    echo "the Storage Box presented another SSH host key than blog:backupStorageBoxHostKey"
  elif grep -qiE 'bucket does not exist|NoSuchBucket' "$err"; then
    echo "the bucket does not exist (blog:backupS3Bucket; create it first)"
  elif grep -qiE 'Permission denied|AccessDenied|Access Denied|InvalidAccessKeyId|SignatureDoesNotMatch|signature we calculated does not match|403' "$err"; then
    echo "the backup target refused the credentials"
  elif grep -qiE 'timeout|timed out|connection refused|no route|could not resolve|no such host|network is unreachable|dial tcp|Connection closed|unable to start the sftp session' "$err"; then
    echo "the backup target could not be reached from here"
  else
    echo "restic failed ($(grep -v '^\s*$' "$err" | tail -n 1 | sed -E 's/[A-Za-z0-9+\/=_-]{24,}/[…]/g' | cut -c1-120))"
  fi
}

main() {
  local state out
  command -v jq >/dev/null || {
    echo '{"state":"unknown","reason":"jq is not installed where pulumi runs"}'
    exit 0
  }
  command -v restic >/dev/null || unknown "restic is not installed where pulumi runs (nix develop ./nix has it)"
  [[ -n ${RESTIC_REPOSITORY:-} && -n ${RESTIC_PASSWORD:-} ]] || unknown "the repository or its password is not known yet"
  work=$(mktemp -d)
  trap cleanup EXIT
  export BLOG_BACKUP_SFTP_COMMAND=$script_dir/../nix/modules/units/backup-sftp.sh BLOG_BACKUP_KNOWN_HOSTS_DIR=$work
  export RESTIC_CACHE_DIR=$work/cache BLOG_BACKUP_SSH_LOG=$work/err
  state=$(BACKUP_ERRORS=$work/err backup_repository_state 2>>"$work/err") || state="error"
  case $state in
  missing) say '{state: "empty"}' ;;
  ok) ;;
  *) unknown "$(classify "$work/err")" ;;
  esac
  if ! out=$(backup_restic snapshots --json --latest 1 --tag "${BLOG_BACKUP_TAG:-blog}" 2>"$work/err"); then
    unknown "$(classify "$work/err")"
  fi
  jq -c 'if type == "array" and length > 0
         then (sort_by(.time) | last | {state: "snapshot", id, time, paths})
         else {state: "empty"} end' <<<"$out" 2>/dev/null || unknown "restic printed no snapshot list"
}

main "$@"
