#!/usr/bin/env bash
# A real deploy target for the integration tests, the e2e suite and the
# benchmark: a systemd-nspawn container that boots Debian with systemd as
# PID 1 (the root file system rootfs.sh builds and caches), a host of its own:
#   - its own network namespace blogt-N, joined to this machine by a veth pair
#     (btN-h here, btN-t inside): 198.18.N.2 (RFC 2544's test range) and
#     fd42:b10b:N::2 inside, .1 and ::1 here; sshd on port 22;
#   - a copy-on-write root: an overlay of the cached base with an upper
#     directory of its own (DIR/ov/upper), mounted at DIR/root here, so what a
#     test reads there (/var/lib/blog-secrets...) is what the target sees;
#   - /nix and /boot: size-limited tmpfs mounts made here (DIR/nix, DIR/boot)
#     and bound in, so they survive a reboot of the container, as disks do;
#   - its own host key and root's authorized keys (/etc/ssh/authorized_keys.d/root,
#     as on NixOS), written into its root before it boots.
# The harness plays the boot loader: before every (re)start it points the
# NixOS-style unit directory (/etc/systemd/system.attached, which systemd
# reads after /etc/systemd/system), /etc/fstab and /etc/blog-test/boot-system
# at the boot default (/boot/default-system, which switch-to-configuration
# boot writes), as NixOS's stage 2 makes /etc of the system it boots; the
# base's blog-test-boot.service then links /run/current-system and
# /run/booted-system to it.
#
#   target.sh start DIR [STORE_SIZE [BOOT_SIZE]]   boots a new target; writes and prints DIR/target.env
#   target.sh stop DIR                              stops it and removes everything it made
#                                                   (idempotent; finds what a failed start left)
#   target.sh run DIR COMMAND...                    runs COMMAND inside the target (its
#                                                   namespaces and its cgroup tree, outside its
#                                                   systemd's units: use systemctl or
#                                                   systemd-run where systemd must own it)
#   target.sh set-host-key DIR                      a new host key; sshd reloads; prints it
#   target.sh reboot DIR [--clean]                  a hard reboot, as a crash or power cut: the
#                                                   container is killed, then boots again as
#                                                   above; --clean: systemctl reboot inside
#                                                   (which, run by anything inside, reboots the
#                                                   target too: a supervisor boots it again)
#   target.sh attach-disk DIR IMAGE NAME            a disk appears: IMAGE (a file) becomes a
#                                                   loop device of this machine (printed), its
#                                                   node appears in the running target with a
#                                                   device-cgroup entry for it alone, and
#                                                   /dev/disk/by-id/NAME (and by-label/LABEL
#                                                   when it has one) link to it, as udev
#                                                   would (there is no udev inside)
#   target.sh detach-disk DIR NAME                  the disk goes away, mounted or not (its
#                                                   mounts inside are unmounted lazily and
#                                                   printed), its node, links and cgroup entry
#                                                   too, then the loop device is detached
#   target.sh reclaim                               stops every target whose owner is dead
#   target.sh leader DIR                            prints the host pid of the target's PID 1
#                                                   (its files: /proc/<pid>/root/...)
#
# Environment of `start`:
#   TARGET_IPV6=0                  no IPv6 address at all
#   TARGET_AUTHORIZED_KEYS=FILE    root's authorized keys (default: a generated client
#                                  key, DIR/client_key)
#   TARGET_TLS_CERT, TARGET_TLS_KEY  the certificate the web unit of a system serves on
#                                  443 (/etc/blog-test/tls inside)
#   TARGET_OWNER_PID               the process that owns the target (default: the caller);
#                                  a target whose owner is dead is reclaimed by the next start
#   TARGET_MAX_SLOT                the highest number handed out (default 200)
#
#   TARGET_HOST_KEY_FILE=FILE      the host's ed25519 private key (default: a new one):
#                                  what cloud-init's ssh_keys gives a Hetzner server
#                                  (the e2e hcloud stand-in)
#
# Targets of several runs at once never collide: the number N (and with it the
# namespace, addresses, veth pair, machine and cgroup names) is allocated under
# a machine-wide lock and recorded, with its owner, in /run/blog-test/slots/N.
# Needs root, systemd-nspawn, ip, flock, losetup, nsenter, ssh-keygen, ssh-keyscan.
set -euo pipefail

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HARNESS_DIR
readonly STATE_ROOT=/run/blog-test
readonly SLOTS=$STATE_ROOT/slots
# The lock the earlier namespace-only harness took for the same names: held
# here too, so that both never hand out one number while they coexist.
readonly LOCK=/run/blog-target-netns.lock
# The numbers handed out: 1..200 (198.18.N.0/24 each); TARGET_MAX_SLOT lowers it (tests).
MAX_SLOT=${TARGET_MAX_SLOT:-200}
if [[ ! $MAX_SLOT =~ ^[0-9]+$ ]] || ((MAX_SLOT < 1 || MAX_SLOT > 200)); then
  echo "target.sh: TARGET_MAX_SLOT='$MAX_SLOT' is not valid; expected 1 to 200" >&2
  exit 1
fi
readonly MAX_SLOT
readonly CGROUP_BASE=blog-test
# The hierarchies a target's processes join: systemd's own (named v1 and the
# unified v2 one) and the devices controller for its allow-list.
readonly CGROUP_HIERARCHIES=(systemd unified devices)
readonly BOOT_TIMEOUT=60 # seconds a boot may take until sshd answers and systemd settles
readonly PATH_INSIDE=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Set by load_env from a target's target.env.
SLOT="" NSPAWN_PID="" SUPERVISOR_PID="" TARGET_ADDR4=""

abort() {
  echo "target.sh: $*" >&2
  exit 1
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

# load_env DIR: the target's record (DIR/target.env) into this shell.
load_env() {
  [[ -f $1/target.env ]] || abort "$1 holds no target (no target.env)"
  # shellcheck source=/dev/null
  source "$1/target.env"
}

# set_env DIR KEY VALUE: replaces or adds one line of DIR/target.env, under
# its lock (the supervisor records each boot's pid while start writes too).
set_env() {
  local file=$1/target.env lock
  exec {lock}>>"$1/target.env.lock"
  flock -w 10 "$lock" || abort "could not lock $file within 10 s"
  { grep -v "^$2=" "$file" 2>/dev/null || true; } >"$file.new.$$"
  printf '%s=%s\n' "$2" "$3" >>"$file.new.$$"
  mv "$file.new.$$" "$file"
  exec {lock}>&-
}

# --- Slots: the numbers, their owners, and reclaiming a dead owner's --------

# process_start PID: its start time (clock ticks since boot), "" if it is gone.
process_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  # Field 22 of stat; field 3 is the first after the command's ")".
  awk '{print $20}' <<<"$stat"
}

# owner_alive SLOTDIR: its recorded owner still runs (same pid, same start time).
owner_alive() {
  local pid start
  read -r pid start <"$1/owner" 2>/dev/null || return 1
  [[ -n $pid && $(process_start "$pid") == "$start" ]]
}

# slot_in_use N: anything with the slot's names exists (ours or another
# harness's): a namespace, a link, a cgroup.
slot_in_use() {
  local n=$1 h
  [[ -e /run/netns/blogt-$n ]] && return 0
  ip link show "bt$n-h" >/dev/null 2>&1 && return 0
  for h in "${CGROUP_HIERARCHIES[@]}"; do
    [[ -d /sys/fs/cgroup/$h/$CGROUP_BASE/blogt-$n ]] && return 0
  done
  return 1
}

# allocate_slot DIR OWNER: the lowest free N, recorded as DIR's, under the
# machine-wide lock; a slot whose owner died is reclaimed first. Prints N.
allocate_slot() {
  local dir=$1 owner=$2 n lock start
  start=$(process_start "$owner")
  [[ -n $start ]] || abort "TARGET_OWNER_PID=$owner is not a running process"
  mkdir -p "$SLOTS"
  exec {lock}>"$LOCK"
  flock -w 60 "$lock" || abort "could not take $LOCK within 60 s (another run holds it)"
  reclaim_dead_locked
  for ((n = 1; n <= MAX_SLOT; n++)); do
    [[ ! -e $SLOTS/$n ]] || continue
    slot_in_use "$n" && continue
    mkdir "$SLOTS/$n"
    printf '%s %s\n' "$owner" "$start" >"$SLOTS/$n/owner"
    printf '%s\n' "$dir" >"$SLOTS/$n/dir"
    exec {lock}>&-
    echo "$n"
    return
  done
  exec {lock}>&-
  abort "no free test target: all $MAX_SLOT numbers are in use (see $SLOTS: each names its owner's pid and directory; targets of runs that died are reclaimed by the next start)"
}

# reclaim_dead_locked: every slot whose owner is dead is torn down (the lock is held).
reclaim_dead_locked() {
  local slot n
  for slot in "$SLOTS"/*; do
    [[ -d $slot ]] || continue
    n=${slot##*/}
    [[ $n =~ ^[0-9]+$ ]] || continue
    owner_alive "$slot" && continue
    echo "target.sh: reclaiming target $n of a run that is gone ($(cat "$slot/dir" 2>/dev/null || echo '?'))" >&2
    teardown "$n" "$(cat "$slot/dir" 2>/dev/null || true)" || true
  done
}

cmd_reclaim() {
  local lock
  mkdir -p "$SLOTS"
  exec {lock}>"$LOCK"
  flock -w 60 "$lock" || abort "could not take $LOCK within 60 s"
  reclaim_dead_locked
  exec {lock}>&-
}

# --- The network ------------------------------------------------------------

# net_up N IPV6: namespace blogt-N, veth pair, addresses.
net_up() {
  local n=$1 ipv6=$2
  ip netns add "blogt-$n"
  ip link add "bt$n-h" type veth peer name "bt$n-t"
  ip link set "bt$n-t" netns "blogt-$n"
  ip addr add "198.18.$n.1/24" dev "bt$n-h"
  ip link set "bt$n-h" up
  ip -n "blogt-$n" link set lo up
  ip -n "blogt-$n" addr add "198.18.$n.2/24" dev "bt$n-t"
  if ((ipv6)); then
    ip -6 addr add "fd42:b10b:$n::1/64" dev "bt$n-h" nodad
    ip -6 -n "blogt-$n" addr add "fd42:b10b:$n::2/64" dev "bt$n-t" nodad
  fi
  ip -n "blogt-$n" link set "bt$n-t" up
}

# net_down N: deleting the namespace deletes the veth pair with it. A
# namespace that a process still enters for a moment refuses: retried.
net_down() {
  local n=$1 try
  for ((try = 0; try < 50; try++)); do
    [[ -e /run/netns/blogt-$n ]] || break
    ip netns del "blogt-$n" 2>/dev/null && break
    sleep 0.1
  done
  [[ ! -e /run/netns/blogt-$n ]] || return 1
  # The veth pair goes with the namespace, a moment later.
  wait_until 5 bash -c "! ip link show bt$n-h >/dev/null 2>&1" || ip link del "bt$n-h" 2>/dev/null || true
  ! ip link show "bt$n-h" >/dev/null 2>&1
}

# --- Cgroups ----------------------------------------------------------------

cgroup_dir() {
  echo "/sys/fs/cgroup/$1/$CGROUP_BASE/blogt-$2"
}

# cgroups_up N: the target's cgroup in each hierarchy; the devices one
# denies everything but the pseudo-devices a container needs (what
# systemd-nspawn would ask its host's systemd for: src/nspawn/nspawn-register.c,
# DeviceAllow=) and the attached disks (attach-disk). Without it the other
# loop devices of this machine would be open to the target.
cgroups_up() {
  local n=$1 h devices entry
  for h in "${CGROUP_HIERARCHIES[@]}"; do
    mkdir -p "$(cgroup_dir "$h" "$n")"
  done
  mkdir -p "$(cgroup_dir systemd "$n")/run" "$(cgroup_dir unified "$n")/run"
  devices=$(cgroup_dir devices "$n")
  echo a >"$devices/devices.deny"
  # null, zero, full, random, urandom, tty, /dev/net/tun; ptmx and the ptys
  # (read and write, never mknod).
  for entry in 'c 1:3 rwm' 'c 1:5 rwm' 'c 1:7 rwm' 'c 1:8 rwm' 'c 1:9 rwm' 'c 5:0 rwm' 'c 10:200 rwm' 'c 5:2 rw' 'c 136:* rw'; do
    echo "$entry" >"$devices/devices.allow"
  done
}

# cgroup_pids N: every process in the target's cgroups (container, nspawn, run).
cgroup_pids() {
  local dir
  dir=$(cgroup_dir unified "$1")
  [[ -d $dir ]] || return 0
  find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null || true
}

# kill_cgroup N: SIGKILL to everything in the target's cgroup tree (a
# SIGKILLed nspawn leaves its container running), until it is empty.
kill_cgroup() {
  local n=$1 dir
  dir=$(cgroup_dir unified "$n")
  [[ -d $dir ]] || return 0
  echo 1 >"$dir/cgroup.kill"
  wait_until 20 bash -c "[[ -z \$(find '$dir' -name cgroup.procs -exec cat {} + 2>/dev/null) ]]" || {
    echo "target.sh: the processes of target $n did not end within 20 s: $(cgroup_pids "$n" | tr '\n' ' ')" >&2
    return 1
  }
}

cgroups_down() {
  local n=$1 h dir
  for h in "${CGROUP_HIERARCHIES[@]}"; do
    dir=$(cgroup_dir "$h" "$n")
    [[ -d $dir ]] || continue
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ ! -d $dir ]] || return 1
  done
  rmdir "/sys/fs/cgroup/systemd/$CGROUP_BASE" "/sys/fs/cgroup/unified/$CGROUP_BASE" "/sys/fs/cgroup/devices/$CGROUP_BASE" 2>/dev/null || true
}

# --- Mounts -----------------------------------------------------------------

# mounts_up DIR BASE STORE_SIZE BOOT_SIZE: the overlay root, /nix, /boot.
mounts_up() {
  local dir=$1 base=$2 store_size=$3 boot_size=$4
  mkdir -p "$dir/ov/upper" "$dir/ov/work" "$dir/root" "$dir/nix" "$dir/boot" "$dir/dev-disk/by-id" "$dir/dev-disk/by-label"
  mount -t overlay -o "lowerdir=$base,upperdir=$dir/ov/upper,workdir=$dir/ov/work" "blogt-root" "$dir/root"
  mount -t tmpfs -o "size=$store_size,mode=755" blogt-nix "$dir/nix"
  mkdir -p "$dir/nix/store" "$dir/nix/var/nix"
  mount -t tmpfs -o "size=$boot_size,mode=755" blogt-boot "$dir/boot"
}

# mounts_down DIR: every mount at or under DIR, deepest first.
mounts_down() {
  local dir=$1 mount_point
  [[ -n $dir && -d $dir ]] || return 0
  findmnt -l -n -o TARGET | awk -v d="$dir" 'index($0, d "/") == 1' | sort -r |
    while read -r mount_point; do
      umount "$mount_point" 2>/dev/null || umount -l "$mount_point"
    done
  ! findmnt -l -n -o TARGET | awk -v d="$dir" 'index($0, d "/") == 1 {found = 1} END {exit !found}'
}

# --- The root file system and the boot --------------------------------------

# prepare_root DIR: what a target has of its own, written into its upper
# layer before the first boot.
prepare_root() {
  local dir=$1 root=$1/root
  # New keys, whatever an earlier start in DIR left (ssh-keygen would ask before overwriting).
  rm -f "$root"/etc/ssh/ssh_host_ed25519_key* "$dir"/client_key*
  if [[ -n ${TARGET_HOST_KEY_FILE:-} ]]; then
    install -m 600 "$TARGET_HOST_KEY_FILE" "$root/etc/ssh/ssh_host_ed25519_key"
    ssh-keygen -y -f "$root/etc/ssh/ssh_host_ed25519_key" >"$root/etc/ssh/ssh_host_ed25519_key.pub"
  else
    ssh-keygen -q -t ed25519 -N '' -C "blog-test-target" -f "$root/etc/ssh/ssh_host_ed25519_key" </dev/null
  fi
  ssh-keygen -q -t ed25519 -N '' -C blog-test-client -f "$dir/client_key" </dev/null
  mkdir -p "$root/etc/ssh/authorized_keys.d"
  if [[ -n ${TARGET_AUTHORIZED_KEYS:-} ]]; then
    cp "$TARGET_AUTHORIZED_KEYS" "$root/etc/ssh/authorized_keys.d/root"
  else
    cp "$dir/client_key.pub" "$root/etc/ssh/authorized_keys.d/root"
  fi
  chmod 644 "$root/etc/ssh/authorized_keys.d/root"
  if [[ -n ${TARGET_TLS_CERT:-} ]]; then
    install -d -m 0755 "$root/etc/blog-test/tls"
    install -m 0644 "$TARGET_TLS_CERT" "$root/etc/blog-test/tls/cert.pem"
    install -m 0600 "$TARGET_TLS_KEY" "$root/etc/blog-test/tls/key.pem"
  fi
  # sshd's log (ssh.service writes it there, rootfs/), readable here after a stop too.
  mkdir -p "$dir/ov/upper/var/log/blog-test"
  ln -sfn ov/upper/var/log/blog-test/sshd.log "$dir/sshd.log"
}

# boot_links DIR: the boot loader's part. The system the target boots is the
# boot default (DIR/boot/default-system, switch-to-configuration boot's link);
# its unit directory, fstab and path become the target's, as NixOS's stage 2
# builds /etc for the generation it boots. Without one, the base's alone.
boot_links() {
  local dir=$1 root=$1/root system=""
  [[ -L $dir/boot/default-system ]] && system=$(readlink "$dir/boot/default-system")
  if [[ -n $system ]]; then
    [[ $system =~ ^/nix/store/[a-z0-9]{32}-[^/]+$ ]] || abort "the boot default of $dir is '$system', not a store path"
    [[ -d $dir/nix/store/${system#/nix/store/} ]] || abort "the boot default $system is not in the target's store"
    ln -sfn "$system/etc/systemd/system" "$root/etc/systemd/system.attached"
    ln -sfn "$system/etc/fstab" "$root/etc/fstab"
    ln -sfn "$system" "$root/etc/blog-test/boot-system"
  else
    rm -f "$root/etc/systemd/system.attached" "$root/etc/blog-test/boot-system"
    [[ ! -L $root/etc/fstab ]] || printf '# no system installed yet (target.sh)\n' >"$root/etc/fstab.new"
    [[ ! -e $root/etc/fstab.new ]] || mv -f "$root/etc/fstab.new" "$root/etc/fstab"
  fi
}

# launch DIR: the container, in the background; records NSPAWN_PID. The
# launcher joins the target's cgroups first (nspawn without a host systemd
# uses the cgroup it starts in: one each, or parallel containers collide).
launch() {
  local dir=$1 n binds=() record device image pid
  load_env "$dir"
  n=$SLOT
  # An attached disk is there from the start of the boot, as a disk is.
  for record in "$dir"/disks/*; do
    [[ -f $record ]] || continue
    read -r device image <"$record"
    binds+=("--bind=$device")
  done
  rm -rf "/run/systemd/nspawn/propagate/blogt-$n"
  # shellcheck disable=SC2016 # expanded by the launcher
  setsid bash -c 'for h in systemd unified devices; do echo $$ >"/sys/fs/cgroup/$h/$1/cgroup.procs"; done; shift; exec "$@"' \
    launcher "$CGROUP_BASE/blogt-$n" \
    systemd-nspawn --quiet --boot --register=no --keep-unit --machine="blogt-$n" \
    --directory="$dir/root" --network-namespace-path="/run/netns/blogt-$n" \
    --bind="$dir/nix:/nix" --bind="$dir/boot:/boot" --bind="$dir/dev-disk:/dev/disk" "${binds[@]}" \
    --capability=CAP_SYS_RESOURCE --console=passive --link-journal=no --resolv-conf=off --timezone=off \
    </dev/null >>"$dir/nspawn.log" 2>&1 &
  pid=$!
  set_env "$dir" NSPAWN_PID "$pid"
}

# cmd_supervise DIR: the target's power supply (started by start, in the
# background): boots it, and boots it again when it reboots (nspawn ends
# with 133 after systemctl reboot inside) or when reboot killed it (DIR/reboot);
# any other end is a power-off. Between two boots: nothing of the old one
# survives (its cgroup is emptied), and the boot default is read again.
cmd_supervise() {
  local dir=$1 status
  while :; do
    boot_links "$dir"
    launch "$dir"
    status=0
    wait "$(sed -n 's/^NSPAWN_PID=//p' "$dir/target.env")" || status=$?
    load_env "$dir"
    kill_cgroup "$SLOT" || true
    rm -rf "/run/systemd/nspawn/propagate/blogt-$SLOT"
    if [[ -e $dir/reboot ]] || ((status == 133)); then
      rm -f "$dir/reboot"
      echo "target.sh: the target reboots (nspawn ended with status $status)" >>"$dir/nspawn.log"
      continue
    fi
    echo "target.sh: the target is off (nspawn ended with status $status)" >>"$dir/nspawn.log"
    return 0
  done
}

# power_on DIR N: the supervisor, in the background; records SUPERVISOR_PID
# (in DIR/target.env and in slot N's record, for a reclaim).
power_on() {
  local dir=$1 n=$2 pid
  setsid "$HARNESS_DIR/target.sh" supervise "$dir" </dev/null >>"$dir/nspawn.log" 2>&1 &
  pid=$!
  set_env "$dir" SUPERVISOR_PID "$pid"
  echo "$pid" >"$SLOTS/$n/supervisor"
}

# wait_booted DIR PREVIOUS: a boot other than nspawn pid PREVIOUS has started.
wait_booted() {
  local dir=$1 previous=$2
  wait_until "$BOOT_TIMEOUT" bash -c "p=\$(sed -n 's/^NSPAWN_PID=//p' '$dir/target.env'); [[ -n \$p && \$p != '$previous' ]]" ||
    abort "the target in $dir did not boot again within ${BOOT_TIMEOUT}s: $(tail -n 5 "$dir/nspawn.log" 2>/dev/null)"
}

# leader DIR: the host pid of the target's PID 1 (systemd), "" while it has none.
# Its cgroup (init.scope) briefly holds the children systemd forks too, before
# they move to their units' (more briefly than a busy machine makes it): the
# leader is the process that is pid 1 in its own namespace (NSpid's last field).
leader() {
  local n payload pid nspid
  n=$(sed -n 's/^SLOT=//p' "$1/target.env")
  payload=$(cgroup_dir systemd "$n")/payload
  while read -r pid; do
    nspid=$(sed -n 's/^NSpid:[[:space:]]*//p' "/proc/$pid/status" 2>/dev/null) || continue
    if [[ ${nspid##*[[:space:]]} == 1 && $nspid == *[[:space:]]* ]]; then
      echo "$pid"
      return 0
    fi
  done < <(cat "$payload/init.scope/cgroup.procs" 2>/dev/null || cat "$payload/cgroup.procs" 2>/dev/null)
}

# presented_key ADDRESS: the ed25519 host key the target's sshd presents.
presented_key() {
  ssh-keyscan -T 5 -t ed25519 "$1" 2>/dev/null | awk '$2 == "ssh-ed25519" {print $2, $3; exit}'
}

# inotify_note: root's inotify instances in use and their limit (each target's
# systemd takes about 7; a systemd that gets none does not boot).
inotify_note() {
  printf '%s of fs.inotify.max_user_instances=%s inotify instances in use; scripts/setup.sh raises it to 1024' \
    "$(find /proc/[0-9]*/fd -lname 'anon_inode:inotify' 2>/dev/null | wc -l)" "$(sysctl -n fs.inotify.max_user_instances)"
}

# wait_ready DIR: sshd answers, with the target's own host key (any other key
# at its address is a harness defect: two targets with one address), and
# systemd has finished starting what the boot wants.
wait_ready() {
  local dir=$1 expected presented state deadline=$((SECONDS + BOOT_TIMEOUT))
  load_env "$dir"
  wait_until "$BOOT_TIMEOUT" port_open "$TARGET_ADDR4" 22 ||
    abort "the target in $dir did not answer on $TARGET_ADDR4 port 22 within ${BOOT_TIMEOUT}s ($(inotify_note)): $(tail -n 20 "$dir/nspawn.log" 2>/dev/null)"
  expected=$(cut -d' ' -f1-2 "$dir/root/etc/ssh/ssh_host_ed25519_key.pub")
  presented=$(presented_key "$TARGET_ADDR4")
  [[ $presented == "$expected" ]] ||
    abort "harness defect: $TARGET_ADDR4 port 22 presents the host key '${presented:-none}', not the target's own ($expected): another target answers at its address"
  state=$(timeout "$((deadline - SECONDS > 5 ? deadline - SECONDS : 5))" "$HARNESS_DIR/target.sh" run "$dir" systemctl is-system-running --wait 2>&1) || true
  case $state in
  running | degraded) ;;
  *) abort "the target in $dir did not finish booting within ${BOOT_TIMEOUT}s (systemd: ${state:-no answer})" ;;
  esac
  set_env "$dir" HOST_KEY "'$(cat "$dir/root/etc/ssh/ssh_host_ed25519_key.pub")'"
}

# --- Disks ------------------------------------------------------------------

# disk_devnum DEVICE: MAJOR:MINOR.
disk_devnum() {
  printf '%d:%d\n' "0x$(stat -L -c %t "$1")" "0x$(stat -L -c %T "$1")"
}

# in_container DIR COMMAND...: COMMAND in the target's mount namespace (the
# harness's own quick steps: device nodes, their mounts).
in_container() {
  local dir=$1 pid
  shift
  pid=$(leader "$dir")
  [[ -n $pid ]] || abort "the target in $dir is not running"
  nsenter --target "$pid" --mount --pid -- env -i PATH="$PATH_INSIDE" "$@"
}

# label_link DIR DEVICE: /dev/disk/by-label/<its label> -> it, as udev's
# 60-persistent-storage.rules would (none without a label).
label_link() {
  local dir=$1 device=$2 label
  label=$(blkid -p -o value -s LABEL "$device" 2>/dev/null || true)
  [[ -n $label && $label != */* ]] || return 0
  ln -sfn "../../${device#/dev/}" "$dir/dev-disk/by-label/$label"
}

# unlink_disk DIR DEVICE NAME: its links (they live in DIR/dev-disk, which is
# the target's /dev/disk).
unlink_disk() {
  local dir=$1 device=$2 name=$3 link
  rm -f "$dir/dev-disk/by-id/$name"
  for link in "$dir"/dev-disk/by-label/*; do
    [[ -L $link && $(readlink "$link") == "../../${device#/dev/}" ]] && rm -f "$link"
  done
  return 0
}

# release_loop DEVICE IMAGE: detaches DEVICE if it still serves IMAGE (a loop
# device still in use is detached when its last user lets go: autoclear).
release_loop() {
  local device=$1 image=$2 back
  back=$(losetup -n -O BACK-FILE "$device" 2>/dev/null) || return 0
  [[ ${back% (deleted)} == "$image" ]] || return 0
  losetup -d "$device"
}

# detach_loops DIR N: every disk still recorded for the target.
detach_loops() {
  local dir=$1 n=$2 record device image
  for record in "$dir"/disks/* "$SLOTS/$n"/disks/*; do
    [[ -f $record ]] || continue
    read -r device image <"$record"
    release_loop "$device" "$image" || true
    rm -f "$record"
  done
}

# --- Teardown ---------------------------------------------------------------

# teardown N DIR: everything target N made, whatever state it is in: its
# processes (by cgroup), mounts (by path), loop devices (by record),
# namespace, cgroups, nspawn's propagation directory, the slot. Idempotent.
teardown() {
  local n=$1 dir=${2:-} status=0
  local supervisor="" nspawn=""
  supervisor=$(cat "$SLOTS/$n/supervisor" 2>/dev/null || true)
  if [[ -n $dir && -f $dir/target.env ]]; then
    supervisor=${supervisor:-$(sed -n 's/^SUPERVISOR_PID=//p' "$dir/target.env")}
    nspawn=$(sed -n 's/^NSPAWN_PID=//p' "$dir/target.env")
  fi
  # The supervisor first, with what it started (a boot it was launching), so
  # that it boots nothing again; then nspawn.
  if [[ -n $supervisor ]]; then
    kill -STOP "$supervisor" 2>/dev/null || true
    # shellcheck disable=SC2046 # one pid a word
    kill -KILL $(cat /proc/"$supervisor"/task/*/children 2>/dev/null) "$supervisor" 2>/dev/null || true
  fi
  [[ -z $nspawn ]] || kill -KILL "$nspawn" 2>/dev/null || true
  kill_cgroup "$n" || status=1
  rm -rf "/run/systemd/nspawn/propagate/blogt-$n"
  if [[ -n $dir ]]; then
    mounts_down "$dir" || status=1
  fi
  detach_loops "$dir" "$n"
  net_down "$n" || status=1
  cgroups_down "$n" || status=1
  if ((status == 0)); then
    rm -rf "${SLOTS:?}/$n"
  fi
  return "$status"
}

# --- Verbs ------------------------------------------------------------------

# check_cgroups: the layout the harness drives (measured on the machines this
# project's CI runs on): cgroup v1 hybrid, with systemd's named hierarchy, the
# devices controller (the targets' allow-lists) and v2 at /sys/fs/cgroup/unified.
check_cgroups() {
  local h
  for h in "${CGROUP_HIERARCHIES[@]}"; do
    [[ -d /sys/fs/cgroup/$h ]] ||
      abort "this machine has no /sys/fs/cgroup/$h: the test targets need the cgroup v1 hybrid layout (systemd's named hierarchy, the devices controller, cgroup v2 at /sys/fs/cgroup/unified); a machine with cgroup v2 only is not supported yet"
  done
}

cmd_start() {
  local dir=$1 store_size=${2:-256m} boot_size=${3:-16m} base n owner=${TARGET_OWNER_PID:-$PPID} ipv6=1 addr6=""
  [[ $dir != *[[:space:]]* ]] || abort "DIR must not contain spaces"
  check_cgroups
  base=$("$HARNESS_DIR/rootfs.sh" path) || exit 1
  [[ ${TARGET_IPV6:-1} != 0 ]] || ipv6=0
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ ! -f $dir/target.env ]] || abort "$dir holds a target already (target.env)"
  n=$(allocate_slot "$dir" "$owner")
  # From here on, stop finds whatever is made.
  printf 'SLOT=%s\n' "$n" >"$dir/target.env"
  ((ipv6 == 0)) || addr6=fd42:b10b:$n::2
  cat >>"$dir/target.env" <<ENV
TARGET_DIR=$dir
TARGET_ROOT=$dir/root
NETNS=blogt-$n
MACHINE=blogt-$n
TARGET_ADDR4=198.18.$n.2
TARGET_ADDR6=$addr6
TARGET_PORT=22
HEALTH_PORT=80
CLIENT_KEY=$dir/client_key
OWNER_PID=$owner
ENV
  # Any failure from here on (set -e, abort, a signal) ends in the EXIT trap's
  # teardown, which names the step.
  # shellcheck disable=SC2064 # the values are meant to be expanded now
  trap "start_failed $n '$dir'" EXIT
  start_step=network
  net_up "$n" "$ipv6"
  start_step=mounts
  mounts_up "$dir" "$base" "$store_size" "$boot_size"
  start_step="its own files"
  prepare_root "$dir"
  start_step=cgroups
  cgroups_up "$n"
  start_step=boot
  power_on "$dir" "$n"
  wait_booted "$dir" ""
  wait_ready "$dir"
  trap - EXIT
  cat "$dir/target.env"
}

# start_failed N DIR: the EXIT trap of a start that did not complete.
start_step=""
start_failed() {
  local status=$?
  echo "target.sh: starting the target in $2 failed (step: ${start_step:-allocation}, status $status); removing what was made" >&2
  teardown "$1" "$2" || true
  rm -f "$2/target.env"
  exit "$((status == 0 ? 1 : status))"
}

cmd_stop() {
  local dir=$1 n
  [[ -f $dir/target.env ]] || return 0
  n=$(sed -n 's/^SLOT=//p' "$dir/target.env")
  [[ $n =~ ^[0-9]+$ ]] || abort "$dir/target.env names no slot"
  # A slot that names another directory is not this target's any more.
  if [[ -f $SLOTS/$n/dir && $(cat "$SLOTS/$n/dir") != "$(cd "$dir" && pwd)" ]]; then
    mounts_down "$dir" || abort "could not unmount everything under $dir"
    return 0
  fi
  teardown "$n" "$dir" || abort "could not remove everything target $n made (see above)"
}

# cmd_run DIR COMMAND...: inside the target's namespaces, in its cgroup tree
# (DIR's run cgroup: killed with the target), with the target's environment.
cmd_run() {
  local dir=$1 pid
  shift
  load_env "$dir"
  pid=$(leader "$dir")
  [[ -n $pid ]] || abort "the target in $dir is not running"
  # shellcheck disable=SC2016 # expanded by that shell
  bash -c 'for h in systemd unified; do echo $$ >"/sys/fs/cgroup/$h/$1/run/cgroup.procs"; done
    echo $$ >"/sys/fs/cgroup/devices/$1/cgroup.procs"; shift; exec "$@"' \
    run "$CGROUP_BASE/blogt-$SLOT" \
    nsenter --target "$pid" --mount --uts --ipc --net --pid -- \
    env -i PATH="$PATH_INSIDE" HOME=/root LANG=C.UTF-8 "$@"
}

cmd_set_host_key() {
  local dir=$1 key
  load_env "$dir"
  key=$dir/root/etc/ssh/ssh_host_ed25519_key
  rm -f "$key" "$key.pub"
  ssh-keygen -q -t ed25519 -N '' -C blog-test-other -f "$key"
  cmd_run "$dir" systemctl reload ssh.service
  wait_until 10 bash -c "[[ \$('$HARNESS_DIR/target.sh' presented-key '$TARGET_ADDR4') == '$(cut -d' ' -f1-2 "$key.pub")' ]]" ||
    abort "sshd did not present the new host key"
  set_env "$dir" HOST_KEY "'$(cat "$key.pub")'"
  cat "$key.pub"
}

cmd_reboot() {
  local dir=$1 how=${2:-hard}
  load_env "$dir"
  kill -0 "${SUPERVISOR_PID:?}" 2>/dev/null || abort "the target in $dir is off (its supervisor is gone)"
  case $how in
  hard | --hard)
    # A power cut: the container is killed; the supervisor boots it again.
    touch "$dir/reboot"
    kill -KILL "$NSPAWN_PID" 2>/dev/null || true
    ;;
  --clean)
    # systemd stops everything, then nspawn ends with 133 (reboot).
    cmd_run "$dir" systemctl reboot || true
    ;;
  *) abort "reboot: '$how' is not --clean" ;;
  esac
  wait_booted "$dir" "$NSPAWN_PID"
  # The disks' nodes are there again (bound in at the start); their cgroup
  # entries stayed with the cgroup.
  wait_ready "$dir"
}

cmd_attach_disk() {
  local dir=$1 image=$2 name=$3 record device devnum
  [[ $name =~ ^[A-Za-z0-9._:+-]+$ ]] || abort "disk name '$name' is not valid"
  [[ -f $image ]] || abort "disk image '$image' is not a file"
  image=$(realpath "$image")
  [[ $image != *[[:space:]]* ]] || abort "disk image '$image' must not contain spaces"
  record=$dir/disks/$name
  [[ ! -e $record ]] || abort "a disk named $name is attached already: $(cat "$record")"
  load_env "$dir"
  [[ -n $(leader "$dir") ]] || abort "the target in $dir is not running"
  mkdir -p "$dir/disks" "$SLOTS/$SLOT/disks"
  device=$(losetup --find --show "$image") || abort "losetup could not attach $image"
  printf '%s %s\n' "$device" "$image" >"$record"
  cp "$record" "$SLOTS/$SLOT/disks/$name"
  devnum=$(disk_devnum "$device")
  if ! echo "b $devnum rwm" >"$(cgroup_dir devices "$SLOT")/devices.allow" ||
    ! in_container "$dir" sh -c "[ -b '$device' ] || { mknod '$device' b ${devnum%:*} ${devnum#*:} && chmod 0660 '$device'; }"; then
    release_loop "$device" "$image"
    rm -f "$record" "$SLOTS/$SLOT/disks/$name"
    abort "could not make $device appear in the target"
  fi
  ln -sfn "../../${device#/dev/}" "$dir/dev-disk/by-id/$name"
  label_link "$dir" "$device"
  echo "$device"
}

cmd_detach_disk() {
  local dir=$1 name=$2 record device image devnum
  record=$dir/disks/$name
  [[ -f $record ]] || return 0 # not attached: nothing to do
  read -r device image <"$record"
  load_env "$dir"
  devnum=$(disk_devnum "$device")
  if [[ -n $(leader "$dir") ]]; then
    # Lazily, deepest first: a detached disk does not wait for its users.
    # shellcheck disable=SC2016 # expanded inside
    in_container "$dir" sh -c 'findmnt -l -n -o MAJ:MIN,TARGET | awk -v d="$1" '"'"'$1 == d {print $2}'"'"' | sort -r |
      while read -r m; do umount -l "$m" && echo "$m"; done
      # A node bound in at the start (a disk attached before the boot) is a mount itself.
      if mountpoint -q "$2"; then umount -l "$2"; fi; rm -f "$2"' unlink "$devnum" "$device"
  fi
  unlink_disk "$dir" "$device" "$name"
  echo "b $devnum rwm" >"$(cgroup_dir devices "$SLOT")/devices.deny" 2>/dev/null || true
  release_loop "$device" "$image"
  rm -f "$record" "$SLOTS/$SLOT/disks/$name"
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
  reclaim) cmd_reclaim ;;
  presented-key) presented_key "$@" ;;
  leader) leader "$@" ;;
  supervise) cmd_supervise "$@" ;;
  *) abort "usage: target.sh start|stop|run|set-host-key|reboot|attach-disk|detach-disk|reclaim DIR ..." ;;
  esac
}

main "$@"
