#!/usr/bin/env bash
# Backup targets for the tests, each a real server in a network namespace of
# its own, as a Hetzner Storage Box or an S3 endpoint is a host of its own:
#
#   backup-server.sh start DIR sftp    OpenSSH's sshd on port 23 with internal-sftp
#                                      only, password logins of the users added
#                                      (a Storage Box's sub-accounts: each starts
#                                      in its own home directory under BOX_ROOT,
#                                      /var/tmp/blog-backup-box-N: its parents must
#                                      be open to the logins' own users, which a
#                                      test's private temporary directory is not)
#   backup-server.sh start DIR s3 ACCESS_KEY
#                                      versitygw (Apache-2.0, a real S3 gateway,
#                                      posix backend under DIR/s3/) on port 80;
#                                      the secret key is read from stdin
#   backup-server.sh add-user DIR USER HOME   (sftp) a login USER, its password
#                                      read from stdin, starting in BOX_ROOT/HOME
#                                      (created if missing, as Hetzner creates a
#                                      sub-account's home directory)
#   backup-server.sh del-user DIR USER        (sftp) the login goes; its directory stays
#   backup-server.sh connect DIR NETNS        routes the test target in network
#                                      namespace NETNS (target.sh's blogt-N) to the
#                                      server: a route to 198.19.0.0/16 via the
#                                      target's gateway, and forwarding on the two
#                                      host-side links only (never the machine's
#                                      ip_forward)
#   backup-server.sh stop DIR                 stops the server, removes its namespace
#
# start prints BACKUP_ADDR=198.19.N.2 (and for sftp HOST_KEY=<its ed25519 key
# line> and BOX_ROOT) and writes them to DIR/server.env; stop removes BOX_ROOT. Needs root, iproute2, openssh-server,
# openssl, util-linux; s3: versitygw ($VERSITYGW, else what scripts/setup.sh
# installs: ~/.cache/blog-versitygw/<version>/versitygw).
set -euo pipefail

readonly LOCK=/run/lock/blog-backup-server.lock
readonly UID_BASE=61000

abort() {
  echo "backup-server.sh: $*" >&2
  exit 1
}

env_of() {
  sed -n "s/^$2=//p" "$1/server.env" 2>/dev/null | tail -n 1
}

# allocate DIR: the first free N (1..200) whose namespace does not exist, under a machine-wide lock.
allocate() {
  local dir=$1 n
  exec 9>"$LOCK"
  flock -w 60 9 || abort "could not take $LOCK"
  for ((n = 1; n <= 200; n++)); do
    if ! ip netns list | awk '{print $1}' | grep -qx "blogbk-$n"; then
      ip netns add "blogbk-$n"
      echo "$n"
      return 0
    fi
  done
  abort "no free backup server slot (200 in use)"
}

network() {
  local n=$1
  ip link add "bb$n-h" type veth peer name "bb$n-s"
  ip link set "bb$n-s" netns "blogbk-$n"
  ip addr add "198.19.$n.1/24" dev "bb$n-h"
  ip link set "bb$n-h" up
  ip -n "blogbk-$n" link set lo up
  ip -n "blogbk-$n" addr add "198.19.$n.2/24" dev "bb$n-s"
  ip -n "blogbk-$n" link set "bb$n-s" up
  # Replies to the test targets (198.18.0.0/16) go back through this machine.
  ip -n "blogbk-$n" route add 198.18.0.0/16 via "198.19.$n.1"
  sysctl -qw "net.ipv4.conf.bb$n-h.forwarding=1"
}

start_sftp() {
  local dir=$1 n=$2 addr=198.19.$2.2 box=/var/tmp/blog-backup-box-$2
  mkdir -p "$dir/etc"
  rm -rf "$box"
  install -d -m 755 "$box"
  echo "BOX_ROOT=$box" >>"$dir/server.env"
  ssh-keygen -q -t ed25519 -N '' -C storagebox -f "$dir/ssh_host_ed25519_key"
  # This machine's accounts (root, sshd's privilege separation user) and the box's logins after them.
  cp /etc/passwd "$dir/etc/passwd"
  cp /etc/group "$dir/etc/group"
  cp /etc/shadow "$dir/etc/shadow"
  chmod 640 "$dir/etc/shadow"
  cat >"$dir/sshd_config" <<EOF
Port 23
ListenAddress $addr
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
UsePAM no
PermitRootLogin no
PubkeyAuthentication no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitEmptyPasswords no
AllowTcpForwarding no
X11Forwarding no
PermitTTY no
Subsystem sftp internal-sftp
ForceCommand internal-sftp
LogLevel VERBOSE
EOF
  # sshd reads /etc/passwd and /etc/shadow: the box's own, in a mount namespace of its own.
  # shellcheck disable=SC2016 # expanded by that bash
  ip netns exec "blogbk-$n" unshare --mount --propagation private bash -c '
    set -e
    for f in passwd shadow group; do mount --bind "$1/etc/$f" "/etc/$f"; done
    mkdir -p /run/sshd
    exec /usr/sbin/sshd -D -f "$1/sshd_config" -E "$1/sshd.log"
  ' sftp-box "$dir" </dev/null >/dev/null 2>&1 &
  echo "SERVER_PID=$!" >>"$dir/server.env"
  wait_port "$n" 23
  echo "HOST_KEY=$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" >>"$dir/server.env"
}

versitygw_bin() {
  if [[ -n ${VERSITYGW:-} ]]; then
    echo "$VERSITYGW"
    return
  fi
  local found
  found=$(find "${HOME:-/root}/.cache/blog-versitygw" -name versitygw -type f -perm -u+x 2>/dev/null | sort | tail -n 1)
  [[ -n $found ]] || abort "versitygw is not installed (bash scripts/setup.sh installs it)"
  echo "$found"
}

start_s3() {
  local dir=$1 n=$2 access=$3 secret bin
  [[ $access =~ ^[A-Za-z0-9]{8,64}$ ]] || abort "ACCESS_KEY must be 8 to 64 letters and digits"
  IFS= read -r secret || true
  [[ ${#secret} -ge 8 ]] || abort "the secret key (stdin) must have at least 8 characters"
  bin=$(versitygw_bin)
  mkdir -p "$dir/s3"
  # The keys through the environment (versitygw reads ROOT_ACCESS_KEY/ROOT_SECRET_KEY), never argv.
  ROOT_ACCESS_KEY=$access ROOT_SECRET_KEY=$secret \
    ip netns exec "blogbk-$n" "$bin" --port "198.19.$n.2:80" --region us-east-1 posix "$dir/s3" \
    </dev/null >"$dir/versitygw.log" 2>&1 &
  echo "SERVER_PID=$!" >>"$dir/server.env"
  wait_port "$n" 80
}

# wait_port N PORT: the server accepts connections (at most 30 s).
wait_port() {
  local n=$1 port=$2 i
  for ((i = 0; i < 300; i++)); do
    if ip netns exec "blogbk-$n" bash -c "exec 3<>/dev/tcp/198.19.$n.2/$port" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  abort "the server in blogbk-$n did not listen on port $port within 30s (see its log in its directory)"
}

cmd_start() {
  local dir=$1 kind=${2:-} n
  [[ $kind == sftp || $kind == s3 ]] || abort "start DIR sftp|s3 [ACCESS_KEY]"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ ! -e $dir/server.env ]] || abort "$dir already holds a server (stop it first)"
  n=$(allocate "$dir")
  {
    echo "NETNS=blogbk-$n"
    echo "SLOT=$n"
    echo "BACKUP_ADDR=198.19.$n.2"
    echo "KIND=$kind"
  } >"$dir/server.env"
  network "$n"
  case $kind in
  sftp) start_sftp "$dir" "$n" ;;
  s3) start_s3 "$dir" "$n" "${3:-}" ;;
  esac
  grep -E '^(BACKUP_ADDR|HOST_KEY)=' "$dir/server.env"
}

cmd_add_user() {
  local dir=$1 user=$2 home=$3 password hash uid box
  box=$(env_of "$dir" BOX_ROOT)
  [[ -n $box ]] || abort "$dir holds no sftp server"
  [[ $user =~ ^[a-z][a-z0-9-]{0,31}$ ]] || abort "USER '$user' is not a login name"
  [[ $home =~ ^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$ && $home != *..* ]] || abort "HOME '$home' is not a relative path"
  IFS= read -r password || true
  [[ -n $password ]] || abort "the password (stdin) is empty"
  hash=$(openssl passwd -6 -stdin <<<"$password")
  ! grep -q "^$user:" "$dir/etc/passwd" || cmd_del_user "$dir" "$user"
  uid=$((UID_BASE + $(grep -c "^[^:]*:[^:]*:6[1-9][0-9][0-9][0-9]:" "$dir/etc/passwd") + 1))
  mkdir -p "$box/$home"
  chown "$uid:$uid" "$box/$home"
  # Written in place: the files are bind-mounted into the server's mount namespace.
  printf '%s:x:%d:%d:storage box login:%s:/bin/sh\n' "$user" "$uid" "$uid" "$box/$home" >>"$dir/etc/passwd"
  printf '%s:x:%d:\n' "$user" "$uid" >>"$dir/etc/group"
  printf '%s:%s:20000:0:99999:7:::\n' "$user" "$hash" >>"$dir/etc/shadow"
}

cmd_del_user() {
  local dir=$1 user=$2 f content
  for f in passwd group shadow; do
    content=$(grep -v "^$user:" "$dir/etc/$f" || true)
    printf '%s\n' "$content" >"$dir/etc/$f"
  done
}

cmd_connect() {
  local dir=$1 netns=$2 n t
  n=$(env_of "$dir" SLOT)
  [[ -n $n ]] || abort "$dir holds no server"
  [[ $netns =~ ^blogt-([0-9]+)$ ]] || abort "NETNS '$netns' is not a target's namespace (blogt-N)"
  t=${BASH_REMATCH[1]}
  ip -n "$netns" route replace 198.19.0.0/16 via "198.18.$t.1"
  sysctl -qw "net.ipv4.conf.bt$t-h.forwarding=1"
  sysctl -qw "net.ipv4.conf.bb$n-h.forwarding=1"
}

cmd_stop() {
  local dir=$1 pid n box
  [[ -f $dir/server.env ]] || return 0
  pid=$(env_of "$dir" SERVER_PID)
  box=$(env_of "$dir" BOX_ROOT)
  n=$(env_of "$dir" SLOT)
  if [[ -n $pid ]]; then
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  fi
  # sshd's own pid (the unshare'd bash exec'd it: the same pid) and versitygw are gone with it.
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  if [[ -n $n ]]; then
    ip link del "bb$n-h" 2>/dev/null || true
    for _ in 1 2 3 4 5; do
      ip netns del "blogbk-$n" 2>/dev/null && break
      sleep 0.2
    done
  fi
  [[ -z $box || $box != /var/tmp/blog-backup-box-* ]] || rm -rf "$box"
  mv -f "$dir/server.env" "$dir/server.env.stopped"
}

main() {
  local verb=${1:-} dir=${2:-}
  [[ -n $dir ]] || abort "usage: backup-server.sh start|add-user|del-user|connect|stop DIR ..."
  shift 2
  case $verb in
  start) cmd_start "$dir" "$@" ;;
  add-user) cmd_add_user "$dir" "$@" ;;
  del-user) cmd_del_user "$dir" "$@" ;;
  connect) cmd_connect "$dir" "$@" ;;
  stop) cmd_stop "$dir" ;;
  *) abort "unknown verb '$verb'" ;;
  esac
}

main "$@"
