#!/usr/bin/env bash
# Times a backup of 1 GiB of small files and its restore, through the same
# path the host uses: restic with the host's sftp.command
# (nix/modules/units/backup-sftp.sh: password by SSH_ASKPASS, pinned host key)
# to a real sshd on port 23 in a network namespace of its own (the Storage
# Box stand-in, tests/integration/harness/backup-server.sh), or to versitygw's
# S3. Prints the wall-clock figures and restic's own beside them. Not a test:
# it asserts nothing.
#
#   sudo bench/backup-bench.sh [sftp|s3] [FILES] [FILE_KIB]
#        defaults: sftp, 16384 files of 64 KiB (1 GiB), incompressible
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
kind=${1:-sftp}
files=${2:-16384}
kib=${3:-64}
work=""
server=""

cleanup() {
  [[ -z $server ]] || bash "$repo/tests/integration/harness/backup-server.sh" stop "$server" || true
  [[ -z $work ]] || rm -rf "$work"
}

step() { printf '== %s\n' "$*" >&2; }

# make_data DIR: FILES files of FILE_KIB KiB of random bytes, 256 to a directory.
make_data() {
  python3 - "$1" "$files" "$kib" <<'PY'
import os, sys
root, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    d = os.path.join(root, f"d{i // 256:04d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
        f.write(os.urandom(kib * 1024))
PY
}

seconds_since() {
  python3 -c 'import sys,time; print(f"{time.monotonic() - float(sys.argv[1]):.1f}")' "$1"
}

now() {
  python3 -c 'import time; print(time.monotonic())'
}

main() {
  [[ $EUID -eq 0 ]] || { echo "needs root (network namespaces)" >&2; exit 1; }
  [[ $kind == sftp || $kind == s3 ]] || { echo "usage: backup-bench.sh [sftp|s3] [FILES] [FILE_KIB]" >&2; exit 1; }
  work=$(mktemp -d /tmp/blog-backup-bench.XXXXXX)
  trap cleanup EXIT
  server=$work/server
  local addr key password start t_backup t_restore summary bytes mib
  step "target: $kind"
  if [[ $kind == sftp ]]; then
    bash "$repo/tests/integration/harness/backup-server.sh" start "$server" sftp >/dev/null
    password=$(openssl rand -hex 16)Aa-1
    bash "$repo/tests/integration/harness/backup-server.sh" add-user "$server" u1-sub1 blog-backups/bench.test <<<"$password"
    addr=$(sed -n 's/^BACKUP_ADDR=//p' "$server/server.env")
    key=$(sed -n 's/^HOST_KEY=//p' "$server/server.env")
    export BLOG_BACKUP_SFTP_USER=u1-sub1 BLOG_BACKUP_SFTP_HOST=$addr BLOG_BACKUP_SFTP_PORT=23 BLOG_BACKUP_SFTP_HOST_KEY=$key
    export BLOG_BACKUP_SFTP_PASSWORD=$password BLOG_BACKUP_KNOWN_HOSTS_DIR=$work
    export RESTIC_REPOSITORY=sftp://u1-sub1@$addr:23/restic
  else
    export AWS_ACCESS_KEY_ID=BENCHKEY0001 AWS_SECRET_ACCESS_KEY
    AWS_SECRET_ACCESS_KEY=$(openssl rand -hex 16)
    mkdir -p "$server"
    bash "$repo/tests/integration/harness/backup-server.sh" start "$server" s3 "$AWS_ACCESS_KEY_ID" <<<"$AWS_SECRET_ACCESS_KEY" >/dev/null
    addr=$(sed -n 's/^BACKUP_ADDR=//p' "$server/server.env")
    mkdir -p "$server/s3/bench-bucket"
    export RESTIC_REPOSITORY=s3:http://$addr/bench-bucket/blog-backups/bench.test
  fi
  RESTIC_PASSWORD=$(openssl rand -hex 24)
  export RESTIC_PASSWORD RESTIC_CACHE_DIR=$work/cache
  local opts=(-o "sftp.command=$repo/nix/modules/units/backup-sftp.sh" -o s3.region=)
  restic "${opts[@]}" init >/dev/null

  step "data: $files files of $kib KiB"
  mkdir -p "$work/data"
  make_data "$work/data"
  bytes=$(du -sb "$work/data" | cut -f1)
  mib=$(python3 -c "print(f'{$bytes / 1048576:.0f}')")

  step "backup"
  start=$(now)
  summary=$(restic "${opts[@]}" backup --json --tag blog "$work/data" | jq -c 'select(.message_type == "summary")')
  t_backup=$(seconds_since "$start")

  step "restore"
  start=$(now)
  restic "${opts[@]}" restore latest --target "$work/restored" >/dev/null
  t_restore=$(seconds_since "$start")
  diff -rq "$work/data" "$work/restored$work/data" >/dev/null || { echo "the restored tree differs from the data" >&2; exit 1; }

  printf '\n%-10s %8s %10s %10s   %s\n' "" "seconds" "MiB" "MiB/s" "restic's figures"
  printf '%-10s %8s %10s %10s   total_duration %ss, files_new %s, data_added %s bytes, total_bytes_processed %s\n' \
    backup "$t_backup" "$mib" "$(python3 -c "print(f'{$mib / $t_backup:.1f}')")" \
    "$(jq -r '.total_duration | . * 10 | round / 10' <<<"$summary")" "$(jq -r .files_new <<<"$summary")" \
    "$(jq -r .data_added <<<"$summary")" "$(jq -r .total_bytes_processed <<<"$summary")"
  printf '%-10s %8s %10s %10s   restore size %s bytes (restic stats --mode restore-size)\n' \
    restore "$t_restore" "$mib" "$(python3 -c "print(f'{$mib / $t_restore:.1f}')")" \
    "$(restic "${opts[@]}" stats --json --mode restore-size latest | jq -r .total_size)"
  printf '(%s: %s, %s files; restic %s; the restored tree is byte-identical)\n' "$kind" "$RESTIC_REPOSITORY" "$files" "$(restic version | cut -d' ' -f2)"
}

main "$@"
