#!/usr/bin/env bash
# Target-side half of deploy.sh. Nothing is installed on the host: deploy.sh
# streams this file over its SSH connection for every command:
#   ssh ... bash -s -- <verb> [args...] < scripts/target-shim.sh
#
# With systemd (/run/systemd/system exists: the real NixOS host) activation
# and the rollback timer are transient systemd units. Without systemd (the
# integration-test target) the same verbs use setsid'd background processes
# whose results are read back the same way. deploy.sh does not know which.
#
# Verbs (one line of output each unless noted):
#   current-system            "current=<path>", "profile=<path>" (empty if none) and
#                             "generation=<number of the system profile's generation>" (0: none)
#   generation                that generation number alone
#   missing-paths PATH...     the given store paths this store lacks, one a line
#   free-space DIR...         "<dir>=<available bytes>" ("<dir>=" if DIR is absent)
#   set-profile CLOSURE       points the system profile at CLOSURE; prints the new generation
#   arm-rollback GEN SECONDS  after SECONDS, switch back to generation GEN unless confirmed
#   activate CLOSURE SECONDS  CLOSURE/bin/switch-to-configuration switch, detached from
#                             this session; waits at most SECONDS for its result
#   confirm                   cancels the armed rollback; fails if it already fired
#   rollback GEN SECONDS      cancels the timer, switches to generation GEN now and activates it;
#                             prints "<generation> <current system>"
#   failed-units              failed systemd units, one a line (none: no output)
set -euo pipefail

readonly profile=/nix/var/nix/profiles/system
readonly state_dir=/run/blog-deploy
readonly rollback_unit=blog-deploy-rollback
# NixOS keeps its tools here; the transient units must not depend on this file.
export PATH="$PATH:/run/current-system/sw/bin"

abort() {
  echo "target: $*" >&2
  exit 1
}

has_systemd() {
  [[ -d /run/systemd/system ]]
}

# switch_back_command GEN: a self-contained /bin/sh command that makes
# generation GEN current and activates it.
switch_back_command() {
  local nix_env=/run/current-system/sw/bin/nix-env
  [[ -x $nix_env ]] || nix_env=$(command -v nix-env) || abort "nix-env not found"
  printf '%s -p %s --switch-generation %s && %s/bin/switch-to-configuration switch' \
    "$nix_env" "$profile" "$1" "$profile"
}

profile_generation() {
  local link
  link=$(readlink "$profile" 2>/dev/null) || {
    echo 0
    return
  }
  link=${link##*/}
  link=${link#system-}
  echo "${link%-link}"
}

cmd_current_system() {
  echo "current=$(readlink -e /run/current-system 2>/dev/null || true)"
  echo "profile=$(readlink -e "$profile" 2>/dev/null || true)"
  echo "generation=$(profile_generation)"
}

cmd_generation() {
  profile_generation
}

cmd_missing_paths() {
  (($# == 0)) || nix-store --check-validity --print-invalid "$@"
}

cmd_free_space() {
  local dir
  for dir in "$@"; do
    if [[ -d $dir ]]; then
      echo "$dir=$(df -Pk "$dir" | awk 'NR == 2 {print $4 * 1024}')"
    else
      echo "$dir="
    fi
  done
}

cmd_set_profile() {
  [[ -x $1/bin/switch-to-configuration ]] || abort "$1 is not a system closure in this store"
  nix-env -p "$profile" --set "$1"
  profile_generation
}

cancel_rollback() {
  if has_systemd; then
    systemctl stop "$rollback_unit.timer" 2>/dev/null || true
    systemctl reset-failed "$rollback_unit.timer" "$rollback_unit.service" 2>/dev/null || true
  elif [[ -f $state_dir/rollback.pid ]]; then
    kill -- "-$(cat "$state_dir/rollback.pid")" 2>/dev/null || true
    rm -f "$state_dir/rollback.pid"
  fi
}

cmd_arm_rollback() {
  local generation=$1 seconds=$2 command
  command=$(switch_back_command "$generation")
  mkdir -p "$state_dir"
  cancel_rollback
  rm -f "$state_dir/rollback-fired"
  echo "$generation" >"$state_dir/rollback-generation"
  if has_systemd; then
    systemd-run --quiet --unit="$rollback_unit" --on-active="$seconds" \
      --timer-property=AccuracySec=1s --timer-property=RemainAfterElapse=no --description="blog deploy: roll back to generation $generation" \
      /bin/sh -c "$command"
  else
    # setsid: own session and process group, so neither the end of this SSH
    # session nor a hangup stops it; confirm kills the whole group.
    setsid /bin/sh -c "sleep $seconds; rm -f $state_dir/rollback.pid; $command; echo \$? >$state_dir/rollback-fired" \
      </dev/null >"$state_dir/rollback.log" 2>&1 &
    echo $! >"$state_dir/rollback.pid"
  fi
  echo "rollback to generation $generation armed for ${seconds}s"
}

cmd_confirm() {
  if has_systemd; then
    systemctl is-active --quiet "$rollback_unit.timer" ||
      abort "the rollback timer is no longer armed (it fired or was cancelled)"
  else
    if [[ ! -f $state_dir/rollback.pid ]] || ! kill -0 "$(cat "$state_dir/rollback.pid")" 2>/dev/null; then
      abort "the rollback timer is no longer armed (it fired or was cancelled)"
    fi
  fi
  cancel_rollback
  echo "confirmed"
}

# run_detached SECONDS COMMAND: runs COMMAND outside this session and waits
# at most SECONDS for its exit status, which becomes ours.
run_detached() {
  local seconds=$1 command=$2 unit status waited=0
  if has_systemd; then
    unit=blog-deploy-activate-$(date +%s)
    status=0
    timeout "$((seconds + 10))" systemd-run --quiet --wait --collect --unit="$unit" \
      --property=Type=oneshot --property=TimeoutStartSec="$seconds" \
      /bin/sh -c "$command" || status=$?
    ((status == 0)) || journalctl --no-pager -n 40 -u "$unit" >&2 || true
    return "$status"
  fi
  mkdir -p "$state_dir"
  rm -f "$state_dir/activate.status"
  setsid /bin/sh -c "$command; echo \$? >$state_dir/activate.status.tmp; mv $state_dir/activate.status.tmp $state_dir/activate.status" \
    </dev/null >"$state_dir/activate.log" 2>&1 &
  while [[ ! -f $state_dir/activate.status ]]; do
    ((waited < seconds * 5)) || abort "activation gave no result within ${seconds}s"
    sleep 0.2
    waited=$((waited + 1))
  done
  status=$(cat "$state_dir/activate.status")
  cat "$state_dir/activate.log" >&2
  return "$status"
}

cmd_activate() {
  local closure=$1 seconds=$2 status=0
  run_detached "$seconds" "$closure/bin/switch-to-configuration switch" || status=$?
  ((status == 0)) || abort "switch-to-configuration switch of $closure exited with status $status"
  echo "activated $closure"
}

cmd_rollback() {
  local generation=$1 seconds=$2 status=0
  cancel_rollback
  run_detached "$seconds" "$(switch_back_command "$generation")" || status=$?
  ((status == 0)) || abort "switching back to generation $generation failed with status $status"
  echo "$(profile_generation) $(readlink -e /run/current-system)"
}

cmd_failed_units() {
  if has_systemd; then
    systemctl --failed --no-legend --plain | awk '{print $1}'
  elif [[ -f $state_dir/failed-units ]]; then
    cat "$state_dir/failed-units"
  fi
}

main() {
  local verb=${1:-}
  shift || true
  case $verb in
  current-system) cmd_current_system ;;
  generation) cmd_generation ;;
  missing-paths) cmd_missing_paths "$@" ;;
  free-space) cmd_free_space "$@" ;;
  set-profile) cmd_set_profile "$1" ;;
  arm-rollback) cmd_arm_rollback "$1" "$2" ;;
  activate) cmd_activate "$1" "$2" ;;
  confirm) cmd_confirm ;;
  rollback) cmd_rollback "$1" "$2" ;;
  failed-units) cmd_failed_units ;;
  *) abort "unknown verb '$verb'" ;;
  esac
}

main "$@"
