#!/usr/bin/env bash
# restic's sftp.command for a Storage Box sub-account: OpenSSH to port 23 with
# the sub-account's password, the box's host key pinned. restic runs it for
# each connection and speaks SFTP over its stdin and stdout.
#
# A sub-account logs in with its password: the API gives it no SSH key (an
# authorized_keys file in its home directory would have to be uploaded with
# that password first, docs.hetzner.com "Storage Box SSH Keys"). The password
# never reaches a command line: ssh asks this same script for it
# (SSH_ASKPASS, SSH_ASKPASS_REQUIRE=force: OpenSSH 8.4 and later, no terminal
# needed), which prints it from the environment restic passed on.
#
# Environment (the stack's environment file, backup-lib.sh):
# BLOG_BACKUP_SFTP_USER, BLOG_BACKUP_SFTP_HOST, BLOG_BACKUP_SFTP_PORT,
# BLOG_BACKUP_SFTP_HOST_KEY (the box's key line, pinned), BLOG_BACKUP_SFTP_PASSWORD;
# BLOG_BACKUP_KNOWN_HOSTS_DIR: where the one-line known_hosts file is written
# (default /run/blog-backup; it holds only the public key); BLOG_BACKUP_SSH_LOG:
# a file for ssh's messages instead of stderr (restic may exit before it
# relays them: scripts/backup-status.sh reads them there).
set -euo pipefail

if [[ ${BLOG_BACKUP_ASKPASS:-} == 1 ]]; then
  # ssh asks: the password, and nothing else (ssh reads one line).
  printf '%s\n' "${BLOG_BACKUP_SFTP_PASSWORD:?}"
  exit 0
fi

user=${BLOG_BACKUP_SFTP_USER:?}
host=${BLOG_BACKUP_SFTP_HOST:?}
port=${BLOG_BACKUP_SFTP_PORT:-23}
key=${BLOG_BACKUP_SFTP_HOST_KEY:?}
[[ $user =~ ^[A-Za-z0-9._-]+$ && $host =~ ^[A-Za-z0-9.:-]+$ && $port =~ ^[0-9]{1,5}$ ]] || {
  echo "backup-sftp: the sub-account's user, host or port is not valid" >&2
  exit 1
}
[[ $key =~ ^[a-z0-9@.-]+\ [A-Za-z0-9+/]+={0,2}$ ]] || {
  echo "backup-sftp: BLOG_BACKUP_SFTP_HOST_KEY is not a host key line" >&2
  exit 1
}

dir=${BLOG_BACKUP_KNOWN_HOSTS_DIR:-/run/blog-backup}
mkdir -p "$dir"
known=$dir/storagebox-known-hosts
# Written anew each time (from the delivered key), renamed into place.
printf 'storagebox %s\n' "$key" >"$known.$$"
mv -f "$known.$$" "$known"

log=()
[[ -z ${BLOG_BACKUP_SSH_LOG:-} ]] || log=(-E "$BLOG_BACKUP_SSH_LOG")
export BLOG_BACKUP_ASKPASS=1 SSH_ASKPASS_REQUIRE=force
SSH_ASKPASS=$(readlink -f "${BASH_SOURCE[0]}")
export SSH_ASKPASS
exec ssh -F none "${log[@]}" \
  -o HostKeyAlias=storagebox -o UserKnownHostsFile="$known" -o GlobalKnownHostsFile=/dev/null \
  -o StrictHostKeyChecking=yes -o UpdateHostKeys=no \
  -o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive \
  -o NumberOfPasswordPrompts=1 -o ConnectTimeout=30 -o ServerAliveInterval=30 -o ServerAliveCountMax=4 \
  -p "$port" -l "$user" "$host" -s sftp
