#!/usr/bin/env bash
# A real deploy target for the integration tests, the e2e suite and the
# benchmark: an OpenSSH server inside its own mount namespace, with its own
# /nix (small tmpfs: a store separate from the deployer's), /run (tmpfs: no
# /run/systemd/system, so target-shim.sh uses its fallback), /boot, /etc/ssh
# (its own host key), /root (an empty home), /var/lib (empty: the deploy puts
# host secrets there) and Nix configuration (NIX_CONF_DIR, set for every SSH
# session: nothing depends on the machine's /etc/nix). A web server
# (health-server.py) serves the page that the fake activation writes to
# /run/blog-health inside it.
#
#   target.sh start DIR [STORE_SIZE [BOOT_SIZE]]   writes DIR/target.env
#   target.sh stop DIR                              stops every process by pid, removes the network
#   target.sh run DIR COMMAND...                    runs COMMAND inside the namespace
#   target.sh set-host-key DIR                      new host key, sshd re-reads it (SIGHUP)
#   target.sh reboot DIR                            a simulated reboot: every process of the
#                                                   target but sshd's listener is killed (SSH
#                                                   sessions, deploy timers, activations), /run
#                                                   is emptied, then the boot default that the
#                                                   fake switch-to-configuration boot wrote
#                                                   (/boot/default-system) is activated, as
#                                                   NixOS' boot activates the default entry
#   target.sh attach-disk DIR IMAGE NAME            a disk appears: IMAGE (a file) becomes a
#                                                   loop device of this machine (printed), and
#                                                   inside the target /dev/disk/by-id/NAME links
#                                                   to it, as udev links a hot-plugged disk
#   target.sh detach-disk DIR NAME                  the disk goes away, mounted or not (its mounts
#                                                   inside the target are unmounted lazily first,
#                                                   and printed),
#                                                   then its loop device is detached; stop does
#                                                   this for every disk still attached
#
# The target's /dev is this machine's, except that on the first attach-disk it
# becomes an overlay of it (this machine's /dev below, a small tmpfs above,
# /dev/pts and /dev/shm bound in again): /dev/disk inside the target is the
# target's own, and nothing is written to this machine's /dev. The loop devices
# themselves are this machine's (the kernel has one set); DIR/disks/NAME
# records each as "DEVICE IMAGE".
#
# Where it listens (environment of `start`):
#   TARGET_NET=loopback (default)  sshd and the web server (HTTP) on random
#                                  ports of 127.0.0.1
#   TARGET_NET=netns               a host of its own: a network namespace
#                                  blogt-N joined to this machine by a veth
#                                  pair, addresses 198.18.N.2 (RFC 2544's
#                                  test range) and fd42:b10b:N::2, sshd on
#                                  port 22, the web server on 80 (or 443
#                                  with TARGET_TLS_CERT/TARGET_TLS_KEY)
#   TARGET_IPV6=0                  netns only: no IPv6 address at all
#   TARGET_AUTHORIZED_KEYS=FILE    root's authorized keys (default: the
#                                  generated client key, DIR/client_key);
#                                  inside: /etc/ssh/authorized_keys.d/root
#   TARGET_HOST_KEY_FILE=FILE      the host's ed25519 private key (default: a
#                                  new one): what cloud-init's ssh_keys gives
#                                  a Hetzner server (the e2e hcloud stand-in)
# Needs root, unshare, nsenter, ip, flock, /usr/sbin/sshd, python3.
set -euo pipefail

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HARNESS_DIR
readonly NETNS_LOCK=/run/blog-target-netns.lock

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

# port_open ADDRESS PORT
port_open() {
  (: <"/dev/tcp/$1/$2") 2>/dev/null
}

# write_files DIR PORT LISTEN...: keys, Nix and sshd configuration, and the
# script that runs inside the namespace.
write_files() {
  local dir=$1 port=$2 address
  shift 2
  mkdir -p "$dir/etc-ssh" "$dir/etc-nix" "$dir/health" "$dir/root-home" "$dir/var-lib"
  if [[ -n ${TARGET_HOST_KEY_FILE:-} ]]; then
    install -m 600 "$TARGET_HOST_KEY_FILE" "$dir/etc-ssh/ssh_host_ed25519_key"
    ssh-keygen -y -f "$dir/etc-ssh/ssh_host_ed25519_key" >"$dir/etc-ssh/ssh_host_ed25519_key.pub"
  else
    ssh-keygen -q -t ed25519 -N '' -C blog-test-target -f "$dir/etc-ssh/ssh_host_ed25519_key"
  fi
  ssh-keygen -q -t ed25519 -N '' -C blog-test-client -f "$dir/client_key"
  # Root's keys live under /etc/ssh inside the namespace, as on NixOS
  # (/etc/ssh/authorized_keys.d/root), so that an install can replace them.
  mkdir -p "$dir/etc-ssh/authorized_keys.d"
  if [[ -n ${TARGET_AUTHORIZED_KEYS:-} ]]; then
    cp "$TARGET_AUTHORIZED_KEYS" "$dir/etc-ssh/authorized_keys.d/root"
  else
    cp "$dir/client_key.pub" "$dir/etc-ssh/authorized_keys.d/root"
  fi
  cat >"$dir/etc-nix/nix.conf" <<CONF
sandbox = false
substituters =
build-users-group =
experimental-features = nix-command
CONF
  {
    echo "Port $port"
    for address in "$@"; do echo "ListenAddress $address"; done
  } >"$dir/sshd_config"
  cat >>"$dir/sshd_config" <<CONF
SetEnv NIX_CONF_DIR=$dir/etc-nix
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
AuthorizedKeysFile /etc/ssh/authorized_keys.d/%u
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
mount --bind "$dir/etc-ssh" /etc/ssh
# root's home of its own: sshd's sessions start root's shell, which would
# otherwise read this machine's ~/.bashrc (a developer's may be slow).
mount --bind "$dir/root-home" /root
# A /var/lib of its own: the deploy's host secrets (/var/lib/blog-secrets)
# stay on this target's disk, apart from every other target and this machine.
mount --bind "$dir/var-lib" /var/lib
exec /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log"
INSIDE
}

# new_netns: the lowest free N, its namespace blogt-N and veth pair, under a
# lock (targets start in parallel); prints N.
new_netns() {
  local n lock
  exec {lock}>"$NETNS_LOCK"
  flock -w 30 "$lock" || abort "could not lock $NETNS_LOCK within 30 s"
  for ((n = 1; n <= 200; n++)); do
    [[ -e /run/netns/blogt-$n ]] || break
  done
  ((n <= 200)) || abort "no free test network (200 targets exist)"
  ip netns add "blogt-$n"
  exec {lock}>&-
  ip link add "bt$n-h" type veth peer name "bt$n-t"
  ip link set "bt$n-t" netns "blogt-$n"
  ip addr add "198.18.$n.1/24" dev "bt$n-h"
  ip link set "bt$n-h" up
  ip -n "blogt-$n" link set lo up
  ip -n "blogt-$n" addr add "198.18.$n.2/24" dev "bt$n-t"
  if [[ ${TARGET_IPV6:-1} == 1 ]]; then
    ip -6 addr add "fd42:b10b:$n::1/64" dev "bt$n-h" nodad
    ip -6 -n "blogt-$n" addr add "fd42:b10b:$n::2/64" dev "bt$n-t" nodad
  fi
  ip -n "blogt-$n" link set "bt$n-t" up
  echo "$n"
}

cmd_start() {
  local dir=$1 store_size=${2:-256m} boot_size=${3:-16m}
  local port health_port server_pid web_pid n="" addr4=127.0.0.1 addr6="" web_bind=127.0.0.1
  local in_net=() web_args=()
  [[ $dir != *[[:space:]]* ]] || abort "DIR must not contain spaces"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  case ${TARGET_NET:-loopback} in
  loopback)
    port=$(free_port)
    health_port=$(free_port)
    write_files "$dir" "$port" 127.0.0.1
    ;;
  netns)
    n=$(new_netns)
    echo "NETNS=blogt-$n" >"$dir/target.env" # so that stop finds it, whatever fails next
    addr4=198.18.$n.2
    port=22
    in_net=(nsenter "--net=/run/netns/blogt-$n" --)
    if [[ ${TARGET_IPV6:-1} == 1 ]]; then
      addr6=fd42:b10b:$n::2
      web_bind=::
      write_files "$dir" "$port" "$addr4" "[$addr6]"
    else
      web_bind=0.0.0.0
      write_files "$dir" "$port" "$addr4"
    fi
    health_port=80
    if [[ -n ${TARGET_TLS_CERT:-} ]]; then
      health_port=443
      web_args=(--cert "$TARGET_TLS_CERT" --key "$TARGET_TLS_KEY")
    fi
    ;;
  *) abort "TARGET_NET='${TARGET_NET}' is not valid; expected loopback or netns" ;;
  esac
  setsid "${in_net[@]}" unshare --mount --propagation private -- bash "$dir/inside.sh" "$dir" "$store_size" "$boot_size" \
    </dev/null >"$dir/target.out" 2>&1 &
  server_pid=$!
  setsid "${in_net[@]}" python3 "$HARNESS_DIR/health-server.py" --bind "$web_bind" --port "$health_port" \
    --dir "$dir/health" "${web_args[@]}" </dev/null >"$dir/http.log" 2>&1 &
  web_pid=$!
  cat >"$dir/target.env" <<ENV
TARGET_DIR=$dir
TARGET_ADDR4=$addr4
TARGET_ADDR6=$addr6
TARGET_PORT=$port
SSHD_PID=$server_pid
HEALTH_PORT=$health_port
HTTP_PID=$web_pid
CLIENT_KEY=$dir/client_key
NETNS=${n:+blogt-$n}
ENV
  wait_until 10 port_open "$addr4" "$port" || abort "sshd did not listen on $addr4 port $port: $(cat "$dir/target.out" "$dir/sshd.log" 2>/dev/null)"
  wait_until 10 port_open "$addr4" "$health_port" || abort "web server did not listen on $addr4 port $health_port: $(cat "$dir/http.log")"
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
  if [[ -n ${SSHD_PID:-} ]]; then
    mapfile -t pids < <(namespace_pids "$SSHD_PID")
    ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null || true
    kill -KILL "$HTTP_PID" 2>/dev/null || true
    wait_until 10 bash -c "! kill -0 $SSHD_PID && ! kill -0 $HTTP_PID" || abort "processes did not stop"
  fi
  # Deleting the namespace deletes the veth pair with it.
  if [[ -n ${NETNS:-} && -e /run/netns/$NETNS ]]; then
    ip netns del "$NETNS"
  fi
  # The namespace, and the mounts in it, are gone: the disks' loop devices go too.
  detach_loops "$dir"
}

cmd_run() {
  local dir=$1
  shift
  # shellcheck source=/dev/null
  source "$dir/target.env"
  NIX_CONF_DIR=$dir/etc-nix nsenter --target "$SSHD_PID" --mount -- "$@"
}

cmd_set_host_key() {
  local dir=$1
  # shellcheck source=/dev/null
  source "$dir/target.env"
  rm -f "$dir/etc-ssh/ssh_host_ed25519_key" "$dir/etc-ssh/ssh_host_ed25519_key.pub"
  ssh-keygen -q -t ed25519 -N '' -C blog-test-other -f "$dir/etc-ssh/ssh_host_ed25519_key"
  kill -HUP "$SSHD_PID"
  sleep 0.5
  wait_until 10 port_open "$TARGET_ADDR4" "$TARGET_PORT" || abort "sshd did not come back"
  cat "$dir/etc-ssh/ssh_host_ed25519_key.pub"
}

cmd_reboot() {
  local dir=$1 pids=() pid others=()
  # shellcheck source=/dev/null
  source "$dir/target.env"
  mapfile -t pids < <(namespace_pids "$SSHD_PID")
  for pid in "${pids[@]}"; do
    [[ $pid == "$SSHD_PID" ]] || others+=("$pid")
  done
  if ((${#others[@]} > 0)); then
    kill -KILL "${others[@]}" 2>/dev/null || true
    wait_until 10 bash -c "! kill -0 ${others[*]} 2>/dev/null" || abort "processes did not stop for the reboot"
  fi
  rm -f "$dir/health/"*
  # shellcheck disable=SC2016 # expanded inside the target
  cmd_run "$dir" sh -c 'find /run -mindepth 1 -maxdepth 1 ! -name sshd ! -name sshd.pid ! -name blog-health -exec rm -rf {} +
    if [ -L /boot/default-system ]; then "$(readlink /boot/default-system)/bin/switch-to-configuration" test; fi'
}

# in_target DIR FUNCTION ARGS...: runs one of this file's functions inside the
# target's mount namespace.
in_target() {
  local dir=$1 fn=$2
  shift 2
  cmd_run "$dir" bash -c "set -euo pipefail; $(declare -f "$fn"); $fn \"\$@\"" "$fn" "$@"
}

# Inside the target, once: /dev becomes an overlay whose lower layer is this
# machine's /dev (device nodes work through it, new ones show up) and whose
# upper layer is a tmpfs in DIR/dev-overlay, mounted only in the target. The
# submounts of /dev (pts, shm...) are bound into it before it moves onto /dev.
private_dev() {
  local dir=$1 top=$1/dev-overlay mount_point bound=() b skip
  if grep -q '^blog-target-dev /dev overlay ' /proc/self/mounts; then return 0; fi
  mkdir -p "$top"
  mount -t tmpfs -o size=1m,mode=755 blog-target-dev-upper "$top"
  mkdir "$top/upper" "$top/work" "$top/merged"
  mount -t overlay -o "lowerdir=/dev,upperdir=$top/upper,workdir=$top/work" blog-target-dev "$top/merged"
  while read -r mount_point; do
    skip=0
    for b in "${bound[@]}"; do [[ $mount_point == "$b"/* ]] && skip=1; done
    ((skip)) && continue
    mount --rbind "$mount_point" "$top/merged${mount_point#/dev}"
    bound+=("$mount_point")
  done < <(findmnt -l -n -o TARGET -R /dev | tail -n +2 | sort -u)
  mount --move "$top/merged" /dev
}

# Inside the target: /dev/disk/by-id/NAME -> ../../loopN, as udev names a disk.
link_disk() {
  local device=$1 name=$2
  mkdir -p /dev/disk/by-id
  ln -sfn "../../${device#/dev/}" "/dev/disk/by-id/$name"
}

# Inside the target: the disk's mounts go (lazily, deepest first: a detached
# disk does not wait for its users), each printed, then its link.
unlink_disk() {
  local device=$1 name=$2 devnum mount_point
  devnum=$((0x$(stat -L -c %t "$device"))):$((0x$(stat -L -c %T "$device")))
  findmnt -l -n -o MAJ:MIN,TARGET | awk -v d="$devnum" '$1 == d {print $2}' | sort -r |
    while read -r mount_point; do
      umount -l "$mount_point"
      printf '%s\n' "$mount_point"
    done
  rm -f "/dev/disk/by-id/$name"
}

# release_loop DEVICE IMAGE: detaches DEVICE if it still serves IMAGE (a loop
# device still in use is detached when its last user lets go: autoclear).
release_loop() {
  local device=$1 image=$2 back
  back=$(losetup -n -O BACK-FILE "$device" 2>/dev/null) || return 0
  [[ ${back% (deleted)} == "$image" ]] || return 0
  losetup -d "$device"
}

# detach_loops DIR: every disk still recorded in DIR/disks.
detach_loops() {
  local dir=$1 record device image
  for record in "$dir"/disks/*; do
    [[ -f $record ]] || continue
    read -r device image <"$record"
    release_loop "$device" "$image" || true
    rm -f "$record"
  done
}

cmd_attach_disk() {
  local dir=$1 image=$2 name=$3 record device
  [[ $name =~ ^[A-Za-z0-9._:+-]+$ ]] || abort "disk name '$name' is not valid"
  [[ -f $image ]] || abort "disk image '$image' is not a file"
  image=$(realpath "$image")
  [[ $image != *[[:space:]]* ]] || abort "disk image '$image' must not contain spaces"
  record=$dir/disks/$name
  [[ ! -e $record ]] || abort "a disk named $name is attached already: $(cat "$record")"
  # shellcheck source=/dev/null
  source "$dir/target.env"
  kill -0 "$SSHD_PID" 2>/dev/null || abort "the target in $dir is not running"
  mkdir -p "$dir/disks"
  device=$(losetup --find --show "$image") || abort "losetup could not attach $image"
  printf '%s %s\n' "$device" "$image" >"$record"
  if ! in_target "$dir" private_dev "$dir" || ! in_target "$dir" link_disk "$device" "$name"; then
    release_loop "$device" "$image"
    rm -f "$record"
    abort "could not make $device appear in the target as /dev/disk/by-id/$name"
  fi
  echo "$device"
}

cmd_detach_disk() {
  local dir=$1 name=$2 record device image
  record=$dir/disks/$name
  [[ -f $record ]] || return 0 # not attached: nothing to do
  read -r device image <"$record"
  # shellcheck source=/dev/null
  source "$dir/target.env"
  if kill -0 "$SSHD_PID" 2>/dev/null; then
    in_target "$dir" unlink_disk "$device" "$name"
  fi
  release_loop "$device" "$image"
  rm -f "$record"
}

main() {
  local verb=${1:-}
  shift || true
  case $verb in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  run) cmd_run "$@" ;;
  set-host-key) cmd_set_host_key "$@" ;;
  reboot) cmd_reboot "$@" ;;
  attach-disk) cmd_attach_disk "$@" ;;
  detach-disk) cmd_detach_disk "$@" ;;
  *) abort "usage: target.sh start|stop|run|set-host-key|reboot|attach-disk|detach-disk DIR ..." ;;
  esac
}

main "$@"
