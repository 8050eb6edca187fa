#!/usr/bin/env bash
# Deploy benchmark (not a test): deploy.sh against the integration-test target
# (tests/integration/harness/target.sh) with a closure of a few hundred store
# paths, then the same closure again, then one with a single dependency changed.
# Prints, per deploy: wall time, SSH connections opened (sshd's "Accepted
# publickey" lines, cross-checked by a counting TCP proxy), bytes the deployer
# sent and received on the wire, and the store paths copied.
#
#   sudo bench/deploy-bench.sh [DEPENDENCIES]     (default 300; needs what the
#                                                  integration tests need)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly harness=$repo/tests/integration/harness
work_dir=""
proxy_pid=""

abort() {
  echo "deploy-bench: $*" >&2
  exit 1
}

cleanup() {
  [[ -z $proxy_pid ]] || kill "$proxy_pid" 2>/dev/null || true
  if [[ -n $work_dir ]]; then
    "$harness/target.sh" stop "$work_dir/target" >/dev/null 2>&1 || true
    rm -rf "$work_dir"
  fi
}

build_closure() {
  nix-build "$harness/closures.nix" --no-out-link --option substituters '' \
    --argstr name bench --arg deps "$1" --arg depBytes 2048 --arg changedDep "$2" 2>/dev/null
}

start_target() {
  "$harness/target.sh" start "$work_dir/target" 512m >/dev/null
  # shellcheck source=/dev/null
  source "$work_dir/target/target.env"
  proxy_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  setsid python3 "$repo/bench/tcp-count-proxy.py" "$proxy_port" "$TARGET_PORT" "$work_dir/proxy.log" \
    </dev/null >"$work_dir/proxy.out" 2>&1 &
  proxy_pid=$!
  local tries=50
  until (: <"/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null; do
    ((tries-- > 0)) || abort "the counting proxy did not start"
    sleep 0.1
  done
  : >"$work_dir/proxy.log"
}

# measure LABEL CLOSURE: one deploy through the proxy; prints one table row.
measure() {
  local label=$1 closure=$2 accepted_before lines_before start end status=0 sent received copied nar_bytes
  accepted_before=$(grep -c 'Accepted publickey' "$TARGET_DIR/sshd.log" || true)
  lines_before=$(wc -l <"$work_dir/proxy.log")
  start=$(date +%s%N)
  env TARGET_HOST=127.0.0.1 TARGET_PORT="$proxy_port" HOST_KEY="$HOST_KEY" \
    SSH_PRIVATE_KEY="$(cat "$CLIENT_KEY")" SYSTEM_CLOSURE="$closure" \
    HEALTH_URL="http://127.0.0.1:$HEALTH_PORT/health.txt" HEALTH_TIMEOUT=10 ROLLBACK_DEADLINE=60 \
    "$repo/scripts/deploy.sh" >"$work_dir/deploy.log" 2>&1 || status=$?
  end=$(date +%s%N)
  ((status == 0)) || abort "$label: deploy.sh exited $status: $(tail -n 5 "$work_dir/deploy.log")"
  sleep 0.5 # the proxy logs a connection when both directions have closed
  read -r sent received < <(tail -n +"$((lines_before + 1))" "$work_dir/proxy.log" |
    awk '{s += $1; r += $2} END {print s + 0, r + 0}')
  copied=$(sed -n 's/^copying \([0-9]*\) paths.*/\1/p' "$work_dir/deploy.log")
  nar_bytes=$(sed -n "s/^copying path '\([^']*\)'.*/\1/p" "$work_dir/deploy.log" | xargs -r nix-store -q --size |
    awk '{s += $1} END {print s + 0}')
  printf '%-22s %8.2f s %6s %10s %14s %14s\n' "$label" "$(((end - start) / 1000000))e-3" \
    "$(($(grep -c 'Accepted publickey' "$TARGET_DIR/sshd.log") - accepted_before))" \
    "$(($(wc -l <"$work_dir/proxy.log") - lines_before))" "$sent" "$received"
  printf '%-22s %s store paths copied, %s bytes of NAR\n' "" "${copied:-0}" "$nar_bytes"
}

main() {
  local deps=${1:-300} first changed
  ((EUID == 0)) || abort "run as root (mount namespaces, sshd)"
  work_dir=$(mktemp -d /tmp/blog-bench.XXXXXX)
  trap cleanup EXIT
  echo "building closures ($deps dependencies + toplevel)..." >&2
  first=$(build_closure "$deps" -1)
  changed=$(build_closure "$deps" 0)
  start_target
  echo "closure: $(nix-store -qR "$first" | wc -l) store paths, $(nix-store -qR "$first" | xargs nix-store -q --size | awk '{s += $1} END {print s}') bytes of NAR"
  printf '%-22s %10s %6s %10s %14s %14s\n' deploy "wall" "ssh" "tcp-conns" "bytes-sent" "bytes-recv"
  measure "first deploy" "$first"
  measure "unchanged redeploy" "$first"
  measure "one path changed" "$changed"
  echo "changed store paths: $(comm -13 <(nix-store -qR "$first" | sort) <(nix-store -qR "$changed" | sort) | tr '\n' ' ')"
}

main "$@"
