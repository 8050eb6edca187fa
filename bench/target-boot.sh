#!/usr/bin/env bash
# Test-target timings (not a test): how long a test target takes to start
# (tests/integration/harness/target.sh start: an overlay of the cached root
# file system, its network, its boot until sshd answers with its own key and
# systemd settles) and to come back from a hard reboot, and how long its stop
# takes; ROUNDS times each (default 5), printing the medians. .ci/run prints
# them; the targets' root file system must be built (scripts/setup.sh).
#
#   sudo bench/target-boot.sh [ROUNDS]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly repo
readonly target_sh=$repo/tests/integration/harness/target.sh
work_dir=""
target_dir=""

abort() {
  echo "target-boot: $*" >&2
  exit 1
}

cleanup() {
  [[ -z $target_dir ]] || "$target_sh" stop "$target_dir" >/dev/null 2>&1 || true
  [[ -z $work_dir ]] || rm -rf "$work_dir"
}

now_ms() {
  echo $(($(date +%s%N) / 1000000))
}

# median FILE: the median of the numbers in FILE, one a line.
median() {
  sort -n "$1" | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2)}'
}

# round N: one start, one hard reboot, one stop, each timed.
round() {
  local start
  target_dir=$work_dir/target-$1
  start=$(now_ms)
  "$target_sh" start "$target_dir" >/dev/null || abort "target.sh start failed"
  echo $(($(now_ms) - start)) >>"$work_dir/start"
  start=$(now_ms)
  "$target_sh" reboot "$target_dir" >/dev/null || abort "target.sh reboot failed"
  echo $(($(now_ms) - start)) >>"$work_dir/reboot"
  start=$(now_ms)
  "$target_sh" stop "$target_dir" >/dev/null || abort "target.sh stop failed"
  echo $(($(now_ms) - start)) >>"$work_dir/stop"
  target_dir=""
}

main() {
  local rounds=${1:-5} n
  [[ $rounds =~ ^[1-9][0-9]*$ ]] || abort "ROUNDS='$rounds' is not valid; expected a positive number"
  ((EUID == 0)) || abort "needs root (as the integration tests do)"
  trap cleanup EXIT
  work_dir=$(mktemp -d)
  "$repo/tests/integration/harness/rootfs.sh" path >/dev/null || exit 1
  for ((n = 1; n <= rounds; n++)); do round "$n"; done
  printf 'test targets, median of %s: start (boot until sshd answers and systemd settles) %s ms; hard reboot %s ms; stop %s ms\n' \
    "$rounds" "$(median "$work_dir/start")" "$(median "$work_dir/reboot")" "$(median "$work_dir/stop")"
}

main "$@"
