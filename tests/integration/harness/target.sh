#!/usr/bin/env bash
# A real deploy target for the integration tests and the benchmark: an OpenSSH
# server on 127.0.0.1 inside its own mount namespace, with its own /nix
# (small tmpfs: a store separate from the deployer's), /run (tmpfs: no
# /run/systemd/system, so target-shim.sh uses its fallback), /boot, /etc/ssh
# (its own host key) and /etc/nix/nix.conf. A health endpoint (python3
# http.server, outside the namespace) serves the directory that the fake
# activation writes to as /run/blog-health inside it.
#
#   target.sh start DIR [STORE_SIZE [BOOT_SIZE]]   writes DIR/target.env
#   target.sh stop DIR                              stops every process by pid
#   target.sh run DIR COMMAND...                    runs COMMAND inside the namespace
#   target.sh set-host-key DIR                      new host key, sshd re-reads it (SIGHUP)
# Needs root, unshare, nsenter, /usr/sbin/sshd, /usr/bin/nix-daemon, python3.
set -euo pipefail

abort() {
  echo "target.sh: $*" >&2
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until SECONDS COMMAND...: polls COMMAND every 0.1 s.
wait_until() {
  local tries=$(($1 * 10))
  shift
  until "$@" 2>/dev/null; do
    ((tries-- > 0)) || return 1
    sleep 0.1
  done
}

port_open() {
  (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_files() {
  local dir=$1 port=$2
  mkdir -p "$dir/etc-ssh" "$dir/etc-nix" "$dir/health"
  ssh-keygen -q -t ed25519 -N '' -C blog-test-target -f "$dir/etc-ssh/ssh_host_ed25519_key"
  ssh-keygen -q -t ed25519 -N '' -C blog-test-client -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  cat >"$dir/etc-nix/nix.conf" <<CONF
sandbox = false
substituters =
build-users-group =
experimental-features = nix-command
CONF
  cat >"$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel VERBOSE
MaxStartups 50
CONF
  # Runs inside the new mount namespace, then becomes sshd (same pid).
  cat >"$dir/inside.sh" <<'INSIDE'
set -euo pipefail
dir=$1 store_size=$2 boot_size=$3
mount -t tmpfs -o "size=$store_size,mode=755" blog-target-nix /nix
mkdir -p /nix/store /nix/var/nix
mount -t tmpfs -o size=16m,mode=755 blog-target-run /run
mkdir -p /run/sshd /run/blog-health
mount --bind "$dir/health" /run/blog-health
mkdir -p /boot # present on Debian; created (empty) on the host only if missing
mount -t tmpfs -o "size=$boot_size,mode=755" blog-target-boot /boot
mount --bind "$dir/etc-nix/nix.conf" /etc/nix/nix.conf
mount --bind "$dir/etc-ssh" /etc/ssh
exec /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log"
INSIDE
}

cmd_start() {
  local dir=$1 store_size=${2:-256m} boot_size=${3:-16m} port health_port server_pid web_pid
  [[ $dir != *[[:space:]]* ]] || abort "DIR must not contain spaces"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  port=$(free_port)
  health_port=$(free_port)
  write_files "$dir" "$port"
  setsid unshare --mount --propagation private -- bash "$dir/inside.sh" "$dir" "$store_size" "$boot_size" \
    </dev/null >"$dir/target.out" 2>&1 &
  server_pid=$!
  setsid python3 -m http.server "$health_port" --bind 127.0.0.1 --directory "$dir/health" \
    </dev/null >"$dir/http.log" 2>&1 &
  web_pid=$!
  cat >"$dir/target.env" <<ENV
TARGET_DIR=$dir
TARGET_PORT=$port
SSHD_PID=$server_pid
HEALTH_PORT=$health_port
HTTP_PID=$web_pid
CLIENT_KEY=$dir/client_key
ENV
  wait_until 10 port_open "$port" || abort "sshd did not listen on port $port: $(cat "$dir/target.out" "$dir/sshd.log" 2>/dev/null)"
  wait_until 10 port_open "$health_port" || abort "health server did not listen on port $health_port"
  echo "HOST_KEY='$(cat "$dir/etc-ssh/ssh_host_ed25519_key.pub")'" >>"$dir/target.env"
  cat "$dir/target.env"
}

# Every process in the target's mount namespace (sshd, sessions, nix-daemon,
# the shim's background activations and rollback timers), by pid.
namespace_pids() {
  local ns pid
  ns=$(readlink "/proc/$1/ns/mnt") || return 0
  for pid in /proc/[0-9]*; do
    [[ $(readlink "$pid/ns/mnt" 2>/dev/null) == "$ns" ]] && echo "${pid#/proc/}"
  done
  return 0
}

cmd_stop() {
  local dir=$1 pids
  [[ -f $dir/target.env ]] || return 0
  # shellcheck source=/dev/null
  source "$dir/target.env"
  mapfile -t pids < <(namespace_pids "$SSHD_PID")
  ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null || true
  kill -KILL "$HTTP_PID" 2>/dev/null || true
  wait_until 10 bash -c "! kill -0 $SSHD_PID && ! kill -0 $HTTP_PID" || abort "processes did not stop"
}

cmd_run() {
  local dir=$1
  shift
  # shellcheck source=/dev/null
  source "$dir/target.env"
  nsenter --target "$SSHD_PID" --mount -- "$@"
}

cmd_set_host_key() {
  local dir=$1
  # shellcheck source=/dev/null
  source "$dir/target.env"
  rm -f "$dir/etc-ssh/ssh_host_ed25519_key" "$dir/etc-ssh/ssh_host_ed25519_key.pub"
  ssh-keygen -q -t ed25519 -N '' -C blog-test-other -f "$dir/etc-ssh/ssh_host_ed25519_key"
  kill -HUP "$SSHD_PID"
  sleep 0.5
  wait_until 10 port_open "$TARGET_PORT" || abort "sshd did not come back"
  cat "$dir/etc-ssh/ssh_host_ed25519_key.pub"
}

main() {
  local verb=${1:-}
  shift || true
  case $verb in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  run) cmd_run "$@" ;;
  set-host-key) cmd_set_host_key "$@" ;;
  *) abort "usage: target.sh start|stop|run|set-host-key DIR ..." ;;
  esac
}

main "$@"
