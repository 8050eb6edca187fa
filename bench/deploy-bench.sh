#!/usr/bin/env bash
# Deploy benchmark (not a test): scripts/deploy.sh beside a bare baseline and,
# given a nixos-anywhere checkout, the peer's redeploy
# (terraform/nixos-rebuild/deploy.sh of that checkout, run unchanged), in the
# same run, on the same closures, each against a fresh integration-test
# target (tests/integration/harness/target.sh: a container booting systemd,
# at an address of its own) behind a counting TCP proxy
# (bench/tcp-count-proxy.py), on two link profiles:
#   plain  the target's veth pair as it is;
#   wan    20 ms added each way by the proxy (40 ms round trip, the TCP
#          handshake's included) and 50 Mbit/s on both ends of the target's
#          veth pair (tc tbf, removed on exit). netem, which would do both in
#          the kernel, is not built into every kernel (not into this one); the
#          proxy's delay covers every byte between the deployer and the target
#          all the same: SSH, the copy, the health check (through a second
#          proxy).
# Three deploys per round: the first (an empty target), the same closure
# again, and one with a single dependency changed. The baseline is the least
# any deploy does, with no check at all:
#   nix copy --to ssh-ng://... (its own SSH connection)
#   ssh ... nix-env -p /nix/var/nix/profiles/system --set <closure>
#   ssh ... <closure>/bin/switch-to-configuration switch
# The peer (nixos-anywhere 1.13.0's terraform/nixos-rebuild/deploy.sh): nix copy
# --to ssh://, then one ssh running nix-env --set and switch-to-configuration
# switch; no lock, no checks, no rollback.
# Prints, per profile, deploy and kind, the medians over the rounds of: wall
# time, SSH logins (sshd's "Accepted publickey" lines), TCP connections, round
# trips (request/reply exchanges: the proxy's count of the times the client
# spoke again after the server had spoken, summed over the connections), bytes
# each way, store paths copied; then the ratios of the median wall times,
# next to the targets of issues 10 (baseline) and 22 (peer).
#
#   sudo bench/deploy-bench.sh [--peer DIR] [--profiles plain,wan] [DEPENDENCIES [ROUNDS]]
#     DIR: a nixos-anywhere checkout (or NIXOS_ANYWHERE=DIR); without one the
#     peer is skipped. DEPENDENCIES 300 and ROUNDS 5 by default. Needs what
#     the integration tests need, and tc (iproute2) for the wan profile.
#
# Nix is configured here as the tests configure it (no /etc/nix/nix.conf, no
# nixbld group needed): NIX_CONF_DIR is an empty directory, NIX_CONFIG says
# offline, unsandboxed, builds as the calling user.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly repo
readonly harness=$repo/tests/integration/harness
readonly scenarios=("first deploy" "unchanged redeploy" "one path changed")
readonly base_targets=("1.0" "1.0" "1.2") # deploy/baseline ceilings (issue 10), in the order of scenarios
readonly wan_delay_ms=20 wan_rate=50mbit
work_dir=""
proxy_pids=()
target_dir=""
shaped=""   # the slot whose veth pair carries a tbf qdisc
peer_dir=${NIXOS_ANYWHERE:-}
profiles=(plain wan)

abort() {
  echo "deploy-bench: $*" >&2
  exit 1
}

cleanup() {
  stop_target
  [[ -z $work_dir ]] || rm -rf "$work_dir"
}

configure_nix() {
  mkdir -p "$work_dir/nix-conf"
  export NIX_CONF_DIR=$work_dir/nix-conf NIX_USER_CONF_FILES=""
  export NIX_CONFIG=$'experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters =\nflake-registry ='
}

build_closure() {
  nix-build "$harness/closures.nix" --no-out-link --option substituters '' \
    --argstr name bench --arg deps "$1" --arg depBytes 2048 --arg changedDep "$2" 2>/dev/null
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_proxy PORT TARGET_PORT DELAY_MS: a counting proxy to the target.
start_proxy() {
  setsid python3 "$repo/bench/tcp-count-proxy.py" "$1" "$2" "$target_dir/proxy.log" "$TARGET_ADDR4" "$3" \
    </dev/null >>"$target_dir/proxy.out" 2>&1 &
  proxy_pids+=("$!")
  local tries=50
  until (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    ((tries-- > 0)) || abort "the counting proxy did not start"
    sleep 0.1
  done
}

# shape_link SLOT: 50 Mbit/s each way on the target's own veth pair (btN-h
# here, btN-t in its namespace), nothing else.
shape_link() {
  local n=$1 tbf=(tbf rate "$wan_rate" burst 128kb latency 100ms)
  shaped=$n
  tc qdisc replace dev "bt$n-h" root "${tbf[@]}" || abort "tc: could not shape bt$n-h"
  ip netns exec "blogt-$n" tc qdisc replace dev "bt$n-t" root "${tbf[@]}" || abort "tc: could not shape bt$n-t in blogt-$n"
}

unshape_link() {
  [[ -n $shaped ]] || return 0
  tc qdisc del dev "bt$shaped-h" root 2>/dev/null || true
  ip netns exec "blogt-$shaped" tc qdisc del dev "bt$shaped-t" root 2>/dev/null || true
  shaped=""
}

# start_target NAME PROFILE: a fresh target, proxies in front of its SSH and
# HTTP ports, the link shaped for the wan profile.
start_target() {
  local delay=0
  target_dir=$work_dir/$1
  "$harness/target.sh" start "$target_dir" 512m >/dev/null
  # shellcheck source=/dev/null
  source "$target_dir/target.env"
  printf 'blog-target %s\n' "$HOST_KEY" >"$target_dir/known_hosts"
  if [[ $2 == wan ]]; then
    delay=$wan_delay_ms
    shape_link "$SLOT"
  fi
  proxy_port=$(free_port)
  start_proxy "$proxy_port" "$TARGET_PORT" "$delay"
  health_port=$(free_port)
  # shellcheck disable=SC2153 # HEALTH_PORT comes from target.env
  start_proxy "$health_port" "$HEALTH_PORT" "$delay"
  : >"$target_dir/proxy.log"
}

stop_target() {
  local pid
  for pid in "${proxy_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  proxy_pids=()
  unshape_link
  if [[ -n $target_dir ]]; then
    "$harness/target.sh" stop "$target_dir" >/dev/null 2>&1 || true
    target_dir=""
  fi
}

run_deploy() {
  env TARGET_HOST=127.0.0.1 TARGET_PORT="$proxy_port" HOST_KEY="$HOST_KEY" \
    SSH_PRIVATE_KEY="$(cat "$CLIENT_KEY")" SYSTEM_CLOSURE="$1" \
    HEALTH_URL="http://127.0.0.1:$health_port/health.txt" HEALTH_TIMEOUT=10 ROLLBACK_DEADLINE=60 \
    "$repo/scripts/deploy.sh"
}

run_baseline() {
  local opts=(-o BatchMode=yes -o HostKeyAlias=blog-target -o StrictHostKeyChecking=yes
    -o UserKnownHostsFile="$target_dir/known_hosts" -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR
    -o IdentitiesOnly=yes -i "$CLIENT_KEY" -p "$proxy_port")
  NIX_SSHOPTS="${opts[*]}" nix copy --to ssh-ng://root@127.0.0.1 --substitute-on-destination --no-check-sigs "$1" &&
    ssh "${opts[@]}" root@127.0.0.1 nix-env -p /nix/var/nix/profiles/system --set "$1" &&
    ssh "${opts[@]}" root@127.0.0.1 "$1/bin/switch-to-configuration" switch
}

# run_peer CLOSURE: the peer's script as its Terraform module calls it
# (terraform/nixos-rebuild/main.tf: SSH_KEY in the environment; arguments
# NIXOS_SYSTEM TARGET_USER TARGET_HOST TARGET_PORT IGNORE_SYSTEMD_ERRORS
# INSTALL_BOOTLOADER).
run_peer() {
  SSH_KEY="$(cat "$CLIENT_KEY")" "$peer_dir/terraform/nixos-rebuild/deploy.sh" "$1" root 127.0.0.1 "$proxy_port" false false
}

# measure PROFILE KIND SCENARIO CLOSURE: one deploy through the proxy; appends
# "profile|kind|scenario|ms|logins|tcp|sent|received|copied|turns" to results.
measure() {
  local profile=$1 kind=$2 scenario=$3 closure=$4 logins_before lines_before start end status=0 sent received turns copied
  logins_before=$(grep -c 'Accepted publickey' "$target_dir/sshd.log" || true)
  lines_before=$(wc -l <"$target_dir/proxy.log")
  start=$(date +%s%N)
  "run_$kind" "$closure" >"$target_dir/deploy.log" 2>&1 || status=$?
  end=$(date +%s%N)
  ((status == 0)) || abort "$kind, $profile, $scenario: exited $status: $(tail -n 5 "$target_dir/deploy.log")"
  # The proxy logs a connection once both directions have closed.
  local tries=50
  while (($(wc -l <"$target_dir/proxy.log") == lines_before)) && ((tries-- > 0)); do sleep 0.05; done
  sleep 0.3
  read -r sent received turns < <(tail -n +"$((lines_before + 1))" "$target_dir/proxy.log" |
    awk '{s += $1; r += $2; t += $3} END {print s + 0, r + 0, t + 0}')
  # nix copy's "copying N paths", or the deploy's own copy inside its session.
  copied=$(sed -n -e 's/^copying \([0-9]*\) paths.*/\1/p' -e 's/^ *imported on the target: \([0-9]*\) paths.*/\1/p' "$target_dir/deploy.log" |
    awk '{s += $1} END {print s + 0}')
  printf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$profile" "$kind" "$scenario" "$(((end - start) / 1000000))" \
    "$(($(grep -c 'Accepted publickey' "$target_dir/sshd.log") - logins_before))" \
    "$(($(wc -l <"$target_dir/proxy.log") - lines_before))" "$sent" "$received" "$copied" "$turns" >>"$work_dir/results"
}

round() {
  local profile=$1 kind=$2 first=$3 changed=$4 number=$5
  start_target "$profile-$kind-$number" "$profile"
  measure "$profile" "$kind" "${scenarios[0]}" "$first"
  measure "$profile" "$kind" "${scenarios[1]}" "$first"
  measure "$profile" "$kind" "${scenarios[2]}" "$changed"
  stop_target
}

# median PROFILE KIND SCENARIO FIELD: the median of that field over the rounds.
median() {
  awk -F'|' -v p="$1" -v k="$2" -v s="$3" -v f="$4" '$1 == p && $2 == k && $3 == s {print $f}' "$work_dir/results" | sort -n |
    awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# ratio PROFILE SCENARIO OTHER TARGET: the deploy's median wall time over OTHER's.
ratio() {
  awk -v s="$2" -v o="$3" -v d="$(median "$1" deploy "$2" 4)" -v b="$(median "$1" "$3" "$2" 4)" -v t="$4" \
    'BEGIN {r = d / b; printf "  %-20s deploy/%-8s %6.2f   target <= %-4s %s\n", s, o, r, t, (r <= t) ? "met" : "NOT MET"}'
}

report() {
  local profile kind scenario i kinds=(deploy baseline)
  [[ -z $peer_dir ]] || kinds+=(peer)
  for profile in "${profiles[@]}"; do
    printf '\nprofile %s%s\n' "$profile" "$([[ $profile == plain ]] || echo " (+${wan_delay_ms} ms each way, $wan_rate)")"
    printf '%-9s %-20s %9s %6s %5s %6s %11s %11s %7s\n' kind deploy "wall(ms)" logins tcp trips bytes-up bytes-down copied
    for scenario in "${scenarios[@]}"; do
      for kind in "${kinds[@]}"; do
        printf '%-9s %-20s %9s %6s %5s %6s %11s %11s %7s\n' "$kind" "$scenario" "$(median "$profile" "$kind" "$scenario" 4)" \
          "$(median "$profile" "$kind" "$scenario" 5)" "$(median "$profile" "$kind" "$scenario" 6)" \
          "$(median "$profile" "$kind" "$scenario" 10)" "$(median "$profile" "$kind" "$scenario" 7)" \
          "$(median "$profile" "$kind" "$scenario" 8)" "$(median "$profile" "$kind" "$scenario" 9)"
      done
    done
    printf 'ratios of the median wall times (%s):\n' "$profile"
    for i in "${!scenarios[@]}"; do
      ratio "$profile" "${scenarios[i]}" baseline "${base_targets[i]}"
    done
    if [[ -n $peer_dir ]]; then
      for i in "${!scenarios[@]}"; do
        local target=0.8
        ((i != 2)) || target=$([[ $profile == plain ]] && echo 1.2 || echo 1.0)
        ratio "$profile" "${scenarios[i]}" peer "$target"
      done
      awk -v d="$(median "$profile" deploy "${scenarios[2]}" 10)" -v p="$(median "$profile" peer "${scenarios[2]}" 10)" \
        'BEGIN {printf "  %-20s round trips deploy %s, peer %s   target <= peer %s\n", "one path changed", d, p, (d <= p) ? "met" : "NOT MET"}'
    fi
  done
}

parse_args() {
  local list p
  while (($# > 0)); do
    case $1 in
    --peer)
      (($# >= 2)) || abort "--peer needs a directory (a nixos-anywhere checkout)"
      peer_dir=$2
      shift 2
      ;;
    --profiles)
      (($# >= 2)) || abort "--profiles needs plain, wan or plain,wan"
      IFS=, read -r -a list <<<"$2"
      profiles=()
      for p in "${list[@]}"; do
        [[ $p == plain || $p == wan ]] || abort "--profiles '$2' is not valid; expected plain, wan or plain,wan"
        profiles+=("$p")
      done
      shift 2
      ;;
    *) break ;;
    esac
  done
  deps=${1:-300}
  rounds=${2:-5}
  [[ $deps =~ ^[1-9][0-9]*$ ]] || abort "DEPENDENCIES='$deps' is not valid; expected a positive number"
  [[ $rounds =~ ^[1-9][0-9]*$ ]] || abort "ROUNDS='$rounds' is not valid; expected a positive number"
  if [[ -n $peer_dir ]]; then
    [[ -x $peer_dir/terraform/nixos-rebuild/deploy.sh ]] ||
      abort "'$peer_dir' is not a nixos-anywhere checkout: it has no executable terraform/nixos-rebuild/deploy.sh"
  fi
}

main() {
  local deps rounds first changed r profile kind kinds=(deploy baseline)
  parse_args "$@"
  ((EUID == 0)) || abort "run as root (mount namespaces, sshd, tc)"
  if [[ " ${profiles[*]} " == *" wan "* ]]; then
    command -v tc >/dev/null || abort "the wan profile needs tc (Debian's iproute2)"
  fi
  if [[ -n $peer_dir ]]; then
    kinds+=(peer)
  else
    echo "no nixos-anywhere checkout given (--peer DIR or NIXOS_ANYWHERE=DIR): the peer is skipped; see bench/README.md" >&2
  fi
  work_dir=$(mktemp -d /tmp/blog-bench.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  configure_nix
  echo "building closures ($deps dependencies + toplevel)..." >&2
  first=$(build_closure "$deps" -1)
  changed=$(build_closure "$deps" 0)
  echo "closure: $(nix-store -qR "$first" | wc -l) store paths, $(nix-store -qR "$first" | xargs nix-store -q --size | awk '{s += $1} END {print s}') bytes of NAR; changed: $(comm -13 <(nix-store -qR "$first" | sort) <(nix-store -qR "$changed" | sort) | wc -l) paths"
  echo "profiles: ${profiles[*]}; $rounds rounds; each kind gets a fresh target per round; medians below; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  for profile in "${profiles[@]}"; do
    for ((r = 1; r <= rounds; r++)); do
      echo "$profile: round $r/$rounds" >&2
      for kind in "${kinds[@]}"; do
        round "$profile" "$kind" "$first" "$changed" "$r"
      done
    done
  done
  report
  echo
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

main "$@"
