#!/usr/bin/env bash
# SC2015: `check && pass || fail` is meant (pass never fails). SC2016: the
# stand-ins' bodies are written unexpanded on purpose; they expand when they run.
# shellcheck disable=SC2015,SC2016
# Behaviour of the host units' own scripts (nix/modules/upkeep-gc.sh,
# nix/modules/hetzner-ipv6.sh) without nixpkgs: each runs with bash, its real
# coreutils, flock and sed, in a mount namespace of its own whose /run and /nix
# are empty tmpfs (the paths the scripts hard-code), and with stand-ins for what
# only a NixOS host has (nix-env, switch-to-configuration, networkctl, ip,
# systemctl, curl, yq), which record how they were called. What the stand-ins
# stand for (the real units, networkd, yq's parsing of the metadata) is covered
# by the VM test and by review. Needs root (unshare --mount).
set -euo pipefail

nix_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ ${BLOG_HOST_SCRIPTS_NS:-} != 1 ]]; then
  if (($(id -u) != 0)); then
    echo "skipped: needs root for a private mount namespace (unshare --mount)"
    exit 0
  fi
  BLOG_HOST_SCRIPTS_NS=1 exec unshare --mount --propagation private bash "${BASH_SOURCE[0]}"
fi

mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /nix
work=$(mktemp -d)
holder=""
trap '[[ -z $holder ]] || kill "$holder" 2>/dev/null || true; rm -rf "$work"' EXIT
bin=$work/bin
log=$work/log
mkdir -p "$bin"
failures=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

pass() {
  echo "ok: $*"
}

# stub NAME BODY: a stand-in command on PATH that logs its arguments, then runs BODY.
stub() {
  printf '#!/usr/bin/env bash\necho "%s $*" >>%q\n%s\n' "$1" "$log" "${2:-}" >"$bin/$1"
  chmod +x "$bin/$1"
}

logged() {
  grep -F -- "$1" "$log" >/dev/null 2>&1
}

# --- upkeep-gc.sh -----------------------------------------------------------

gc() {
  : >"$log"
  PATH="$bin:$PATH" KEEP_GENERATIONS=${KEEP:-3} LOCK_WAIT=${WAIT:-1} bash "$nix_dir/modules/upkeep-gc.sh" >"$work/out" 2>&1
}

# Two systems in the profile; the profile points at the second, which the clean-up
# must rewrite the boot menu from. Each records its switch-to-configuration call
# and whether the deploy lock and switch.lock were held then.
make_system() {
  local system=/nix/store/$1
  mkdir -p "$system/bin"
  printf '#!/usr/bin/env bash\nlocks=""\nflock -n /run/blog-deploy/lock true || locks="$locks deploy-lock"\nflock -n /run/blog-deploy/switch.lock true || locks="$locks switch-lock"\necho "switch-to-configuration %s $*$locks" >>%q\n' \
    "$system" "$log" >"$system/bin/switch-to-configuration"
  chmod +x "$system/bin/switch-to-configuration"
}
first=00000000000000000000000000000001-nixos-system-first
second=00000000000000000000000000000002-nixos-system-second
make_system "$first"
make_system "$second"
mkdir -p /nix/var/nix/profiles
ln -s "/nix/store/$first" /nix/var/nix/profiles/system-1-link
ln -s "/nix/store/$second" /nix/var/nix/profiles/system-2-link
ln -s system-2-link /nix/var/nix/profiles/system
stub nix-env 'flock -n /run/blog-deploy/lock true || echo "nix-env under deploy-lock" >>'"$log"
stub nix-collect-garbage 'test -f /run/blog-deploy/holder && echo "holder: $(sed -n "s/^origin=//p" /run/blog-deploy/holder)" >>'"$log"

if gc; then
  order=$(grep -oE '^(nix-env --|switch-to-configuration /|nix-collect-garbage)' "$log" | cut -d' ' -f1 | tr '\n' ' ')
  [[ $order == "nix-env switch-to-configuration nix-collect-garbage " ]] &&
    pass "gc: deletes generations, rewrites the boot menu, collects garbage, in this order" ||
    fail "gc: expected nix-env, switch-to-configuration, nix-collect-garbage; got '$order'"
  logged "nix-env --profile /nix/var/nix/profiles/system --delete-generations +3" &&
    pass "gc: keeps the newest 3 generations of the system profile" || fail "gc: nix-env was not asked to keep 3: $(cat "$log")"
  logged "switch-to-configuration /nix/store/$second boot deploy-lock switch-lock" &&
    pass "gc: installs the boot loader from the system profile's system, under both locks" ||
    fail "gc: expected switch-to-configuration boot of the profile's system under both locks: $(cat "$log")"
  logged "nix-env under deploy-lock" && pass "gc: deletes generations under the deploy lock" || fail "gc: nix-env ran without the deploy lock"
  logged "holder: weekly store clean-up (blog-gc.service)" &&
    pass "gc: a deploy that finds the lock held is told what holds it" || fail "gc: no holder record while it ran"
  [[ ! -e /run/blog-deploy/holder ]] && pass "gc: the holder record goes when it ends" || fail "gc: the holder record stayed"
else
  fail "gc: exited with $? without a deploy: $(cat "$work/out")"
fi

# A deploy holds the lock: the clean-up waits LOCK_WAIT seconds, then skips, touching nothing.
(
  exec 8>>/run/blog-deploy/lock
  flock 8
  exec sleep 30
) &
holder=$!
tries=50
until ! flock -n /run/blog-deploy/lock true; do
  ((--tries > 0)) || {
    echo "FAIL: the stand-in deploy never took the lock"
    exit 1
  }
  sleep 0.1
done
if gc; then
  [[ ! -s $log ]] && pass "gc: with a deploy holding the lock, nothing runs" || fail "gc: ran under a deploy's lock: $(cat "$log")"
  grep -qF "skipped: a deploy still holds /run/blog-deploy/lock after 1s" "$work/out" &&
    pass "gc: says it skipped and why" || fail "gc: no skip message: $(cat "$work/out")"
else
  fail "gc: exited with $? while a deploy held the lock (expected 0, skipped): $(cat "$work/out")"
fi
kill "$holder"
wait "$holder" 2>/dev/null || true
holder=""

if KEEP=0 gc; then
  fail "gc: accepted KEEP_GENERATIONS=0"
else
  [[ ! -s $log ]] && grep -qF "KEEP_GENERATIONS='0' is not valid" "$work/out" &&
    pass "gc: refuses KEEP_GENERATIONS=0 before doing anything" || fail "gc: KEEP_GENERATIONS=0: $(cat "$work/out") $(cat "$log")"
fi

# --- hetzner-ipv6.sh --------------------------------------------------------

dropin=/run/systemd/network/10-uplink.network.d/hetzner-ipv6.conf

# ipv6 ADDRESS GATEWAY SSHD: one run with the metadata giving ADDRESS and
# GATEWAY (yq's answers) and sshd active (SSHD=1) or not.
ipv6() {
  : >"$log"
  stub curl 'echo "network-config from the metadata service"'
  stub yq 'case $1 in *address*) printf "%s\n" "$FAKE_ADDRESS" ;; *gateway*) printf "%s\n" "$FAKE_GATEWAY" ;; esac'
  stub systemctl '[[ $FAKE_SSHD == 1 ]]'
  stub networkctl ''
  stub wait-online ''
  stub ip 'case "$*" in *" show "*) echo "present" ;; esac'
  PATH="$bin:$PATH" FAKE_ADDRESS=$1 FAKE_GATEWAY=$2 FAKE_SSHD=$3 METADATA_URL=http://169.254.169.254/x \
    UPLINK=eth0 UPLINK_NETWORK=10-uplink WAIT_ONLINE=wait-online bash "$nix_dir/modules/hetzner-ipv6.sh" >"$work/out" 2>&1
}

expected=$'[Network]\nAddress=2a01:4f8:c0c:1234::1/64\n\n[Route]\nGateway=fe80::1\nGatewayOnLink=yes'
if ipv6 2a01:4f8:c0c:1234::1/64 fe80::1 0; then
  [[ $(<"$dropin") == "$expected" ]] && pass "ipv6: writes the drop-in for networkd" || fail "ipv6: drop-in is: $(cat "$dropin")"
  logged "networkctl reload" && ! logged "ip -6 address replace" &&
    pass "ipv6: before sshd runs, networkd reloads and applies it; no ip replace" || fail "ipv6: boot path ran: $(cat "$log")"
else
  fail "ipv6: boot run exited with $?: $(cat "$work/out")"
fi
if ipv6 2a01:4f8:c0c:1234::1/64 fe80::1 0; then
  ! logged "networkctl" && pass "ipv6: run again, with the same answer, it reloads nothing" || fail "ipv6: reloaded again: $(cat "$log")"
else
  fail "ipv6: second run exited with $?: $(cat "$work/out")"
fi
if ipv6 2a01:4f8:c0c:1234::1/64 fe80::1 1; then
  ! logged "networkctl" && logged "ip -6 address replace 2a01:4f8:c0c:1234::1/64 dev eth0" &&
    logged "ip -6 route replace default via fe80::1 dev eth0 onlink" &&
    pass "ipv6: once sshd runs, it adds the address and route with ip replace and never touches networkd" ||
    fail "ipv6: sshd path ran: $(cat "$log")"
else
  fail "ipv6: run with sshd active exited with $?: $(cat "$work/out")"
fi
rm -f "$dropin"
for bad in "2a01:4f8::1" "2a01:4f8::1/64 DNS=192.0.2.1" "\$(reboot)/64"; do
  if ipv6 "$bad" fe80::1 0; then
    fail "ipv6: accepted the address '$bad'"
  else
    [[ ! -e $dropin ]] && ! logged "networkctl" && ! logged "ip -6 address replace" &&
      pass "ipv6: refuses the address '$bad' before changing anything" || fail "ipv6: '$bad' changed something: $(cat "$log")"
  fi
done
if ipv6 2a01:4f8:c0c:1234::1/64 "fe80::1 onlink via 192.0.2.1" 1; then
  fail "ipv6: accepted a malformed gateway"
else
  ! logged "ip -6" && pass "ipv6: refuses a malformed gateway before changing anything" || fail "ipv6: malformed gateway: $(cat "$log")"
fi

if ((failures > 0)); then
  echo "$failures host script check(s) failed"
  exit 1
fi
