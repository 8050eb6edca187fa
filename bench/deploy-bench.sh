#!/usr/bin/env bash
# Deploy benchmark (not a test): scripts/deploy.sh against a bare baseline,
# in the same run, on the same closures, each against a fresh integration-test
# target (tests/integration/harness/target.sh: a container booting systemd,
# at an address of its own) behind a byte-counting TCP
# proxy (bench/tcp-count-proxy.py). Three deploys per round: the first (an
# empty target), the same closure again, and one with a single dependency
# changed. The baseline is the least any deploy does, with no check at all:
#   nix copy --to ssh-ng://... (its own SSH connection)
#   ssh ... nix-env -p /nix/var/nix/profiles/system --set <closure>
#   ssh ... <closure>/bin/switch-to-configuration switch
# Prints, per deploy and per kind, the median wall time over the rounds, SSH
# logins (sshd's "Accepted publickey" lines), TCP connections and bytes seen
# by the proxy, store paths copied; then the deploy/baseline ratio of the
# median wall times, next to the targets of issue 10.
#
#   sudo bench/deploy-bench.sh [DEPENDENCIES [ROUNDS]]   (defaults 300 and 5;
#                                                        needs what the
#                                                        integration tests need)
#
# Nix is configured here as the tests configure it (no /etc/nix/nix.conf, no
# nixbld group needed): NIX_CONF_DIR is an empty directory, NIX_CONFIG says
# offline, unsandboxed, builds as the calling user.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly repo
readonly harness=$repo/tests/integration/harness
readonly scenarios=("first deploy" "unchanged redeploy" "one path changed")
readonly targets=("1.0" "1.0" "1.2") # deploy/baseline ceilings, in the order of scenarios
work_dir=""
proxy_pid=""
target_dir=""

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

# start_target NAME: a fresh target and a counting proxy in front of it.
start_target() {
  target_dir=$work_dir/$1
  "$harness/target.sh" start "$target_dir" 512m >/dev/null
  # shellcheck source=/dev/null
  source "$target_dir/target.env"
  printf 'blog-target %s\n' "$HOST_KEY" >"$target_dir/known_hosts"
  proxy_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  setsid python3 "$repo/bench/tcp-count-proxy.py" "$proxy_port" "$TARGET_PORT" "$target_dir/proxy.log" "$TARGET_ADDR4" \
    </dev/null >"$target_dir/proxy.out" 2>&1 &
  proxy_pid=$!
  local tries=50
  until (: <"/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null; do
    ((tries-- > 0)) || abort "the counting proxy did not start"
    sleep 0.1
  done
  : >"$target_dir/proxy.log"
}

stop_target() {
  if [[ -n $proxy_pid ]]; then
    kill "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
    proxy_pid=""
  fi
  if [[ -n $target_dir ]]; then
    "$harness/target.sh" stop "$target_dir" >/dev/null 2>&1 || true
    target_dir=""
  fi
}

run_deploy() {
  env TARGET_HOST=127.0.0.1 TARGET_PORT="$proxy_port" HOST_KEY="$HOST_KEY" \
    SSH_PRIVATE_KEY="$(cat "$CLIENT_KEY")" SYSTEM_CLOSURE="$1" \
    HEALTH_URL="http://$TARGET_ADDR4:$HEALTH_PORT/health.txt" HEALTH_TIMEOUT=10 ROLLBACK_DEADLINE=60 \
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

# measure KIND SCENARIO CLOSURE: one deploy through the proxy; appends
# "kind|scenario|ms|logins|tcp|sent|received|copied" to results.
measure() {
  local kind=$1 scenario=$2 closure=$3 logins_before lines_before start end status=0 sent received copied
  logins_before=$(grep -c 'Accepted publickey' "$target_dir/sshd.log" || true)
  lines_before=$(wc -l <"$target_dir/proxy.log")
  start=$(date +%s%N)
  "run_$kind" "$closure" >"$target_dir/deploy.log" 2>&1 || status=$?
  end=$(date +%s%N)
  ((status == 0)) || abort "$kind, $scenario: exited $status: $(tail -n 5 "$target_dir/deploy.log")"
  # The proxy logs a connection once both directions have closed.
  local tries=50
  while (($(wc -l <"$target_dir/proxy.log") == lines_before)) && ((tries-- > 0)); do sleep 0.05; done
  sleep 0.2
  read -r sent received < <(tail -n +"$((lines_before + 1))" "$target_dir/proxy.log" |
    awk '{s += $1; r += $2} END {print s + 0, r + 0}')
  copied=$(sed -n 's/^copying \([0-9]*\) paths.*/\1/p' "$target_dir/deploy.log" | awk '{s += $1} END {print s + 0}')
  printf '%s|%s|%s|%s|%s|%s|%s|%s\n' "$kind" "$scenario" "$(((end - start) / 1000000))" \
    "$(($(grep -c 'Accepted publickey' "$target_dir/sshd.log") - logins_before))" \
    "$(($(wc -l <"$target_dir/proxy.log") - lines_before))" "$sent" "$received" "$copied" >>"$work_dir/results"
}

round() {
  local kind=$1 first=$2 changed=$3 number=$4
  start_target "$kind-$number"
  measure "$kind" "${scenarios[0]}" "$first"
  measure "$kind" "${scenarios[1]}" "$first"
  measure "$kind" "${scenarios[2]}" "$changed"
  stop_target
}

# median KIND SCENARIO FIELD: the median of that field over the rounds.
median() {
  awk -F'|' -v k="$1" -v s="$2" -v f="$3" '$1 == k && $2 == s {print $f}' "$work_dir/results" | sort -n |
    awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

report() {
  local kind scenario i d b
  printf '\n%-9s %-20s %9s %6s %5s %11s %11s %7s\n' kind deploy "wall(ms)" logins tcp bytes-sent bytes-recv copied
  for scenario in "${scenarios[@]}"; do
    for kind in deploy baseline; do
      printf '%-9s %-20s %9s %6s %5s %11s %11s %7s\n' "$kind" "$scenario" "$(median "$kind" "$scenario" 3)" \
        "$(median "$kind" "$scenario" 4)" "$(median "$kind" "$scenario" 5)" "$(median "$kind" "$scenario" 6)" \
        "$(median "$kind" "$scenario" 7)" "$(median "$kind" "$scenario" 8)"
    done
  done
  printf '\n%-20s %10s %8s\n' deploy "ratio" "target"
  for i in "${!scenarios[@]}"; do
    d=$(median deploy "${scenarios[i]}" 3)
    b=$(median baseline "${scenarios[i]}" 3)
    awk -v s="${scenarios[i]}" -v d="$d" -v b="$b" -v t="${targets[i]}" \
      'BEGIN {r = d / b; printf "%-20s %10.2f %8s  %s\n", s, r, "<= " t, (r <= t) ? "met" : "NOT MET"}'
  done
}

main() {
  local deps=${1:-300} rounds=${2:-5} first changed r
  ((EUID == 0)) || abort "run as root (mount namespaces, sshd)"
  work_dir=$(mktemp -d /tmp/blog-bench.XXXXXX)
  trap cleanup EXIT
  configure_nix
  echo "building closures ($deps dependencies + toplevel)..." >&2
  first=$(build_closure "$deps" -1)
  changed=$(build_closure "$deps" 0)
  echo "closure: $(nix-store -qR "$first" | wc -l) store paths, $(nix-store -qR "$first" | xargs nix-store -q --size | awk '{s += $1} END {print s}') bytes of NAR; changed: $(comm -13 <(nix-store -qR "$first" | sort) <(nix-store -qR "$changed" | sort) | wc -l) paths"
  echo "$rounds rounds; each kind gets a fresh target per round; medians below"
  for ((r = 1; r <= rounds; r++)); do
    echo "round $r/$rounds" >&2
    round deploy "$first" "$changed" "$r"
    round baseline "$first" "$changed" "$r"
  done
  report
}

main "$@"
