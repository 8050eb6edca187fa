#!/usr/bin/env bash
# Deploys a built NixOS system closure to a host that install.sh installed:
# pinned host key, one SSH connection, copy, switch, health check, and a
# rollback the target performs by itself if this script never confirms.
#
# Input (environment; secrets only here, never arguments): TARGET_HOST,
# TARGET_PORT, TARGET_USER, HOST_KEY, SSH_PRIVATE_KEY, CONNECT_ATTEMPTS,
# CONNECT_TIMEOUT, SYSTEM_CLOSURE, FLAKE_ATTR, HEALTH_URL, DOMAIN,
# HEALTH_EXPECT, HEALTH_RESOLVE, HEALTH_TIMEOUT, ROLLBACK_DEADLINE.
# Exit codes: 0 deployed or nothing to do, 1 bad input, 2 refused before
# changing the target, 3 failed and rolled back, 4 rollback failed / unknown.
#
# Test hook (integration tests only): DEPLOY_TEST_STOP_AFTER=activate makes
# the script stop right after activation, as if the connection dropped there,
# so the target's own rollback timer has to act.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/common.sh
source "$script_dir/lib/common.sh"
readonly shim=$script_dir/target-shim.sh
readonly nix_flags=(--extra-experimental-features 'nix-command flakes')
readonly copy_attempts=3
readonly activate_timeout=600 # seconds switch-to-configuration may take

work_dir=""
control_path=""
ssh_opts=()
previous_generation=0
previous_closure=""
new_generation=""

parse_inputs() {
  require_set TARGET_HOST
  require_set HOST_KEY
  require_set SYSTEM_CLOSURE
  TARGET_PORT=${TARGET_PORT:-22}
  TARGET_USER=${TARGET_USER:-root}
  CONNECT_ATTEMPTS=${CONNECT_ATTEMPTS:-30}
  CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-600}
  HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-60}
  ROLLBACK_DEADLINE=${ROLLBACK_DEADLINE:-120}
  FLAKE_ATTR=${FLAKE_ATTR:-}
  HEALTH_EXPECT=${HEALTH_EXPECT:-}
  HEALTH_RESOLVE=${HEALTH_RESOLVE:-}
  if [[ -z ${HEALTH_URL:-} ]]; then
    [[ -n ${DOMAIN:-} ]] || abort "$EXIT_BAD_INPUT" "HEALTH_URL is not set and DOMAIN is not set either; one is required"
    HEALTH_URL="https://$DOMAIN/"
  fi
  require_uint TARGET_PORT 1
  require_uint CONNECT_ATTEMPTS 1
  require_uint CONNECT_TIMEOUT 1
  require_uint HEALTH_TIMEOUT 1
  require_uint ROLLBACK_DEADLINE 1
  ((ROLLBACK_DEADLINE > HEALTH_TIMEOUT)) ||
    abort "$EXIT_BAD_INPUT" "ROLLBACK_DEADLINE='$ROLLBACK_DEADLINE' is not valid; expected more than HEALTH_TIMEOUT ($HEALTH_TIMEOUT)"
  require_host_key HOST_KEY
  [[ $SYSTEM_CLOSURE =~ ^/nix/store/[a-z0-9]{32}-[^/[:space:]]+$ ]] ||
    abort "$EXIT_BAD_INPUT" "SYSTEM_CLOSURE='$SYSTEM_CLOSURE' is not valid; expected a store path /nix/store/<hash>-<name>"
}

cleanup() {
  local status=$?
  if [[ -n $control_path && -S $control_path ]]; then
    ssh -o ControlPath="$control_path" -O exit "$(target_address)" 2>/dev/null || true
  fi
  [[ -z $work_dir ]] || rm -rf "$work_dir"
  exit "$status"
}

prepare_work_dir() {
  make_work_dir
  control_path=$work_dir/ssh.sock
  write_known_hosts "$work_dir/known_hosts" "$HOST_KEY"
  pinned_ssh_options ssh_opts "$work_dir/known_hosts"
  ssh_opts+=(
    -o ControlPath="$control_path"
    -o Compression=yes
    -o ServerAliveInterval=5
    -o ServerAliveCountMax=6
  )
  if has_value SSH_PRIVATE_KEY; then
    write_secret_file "$work_dir/id_deploy" SSH_PRIVATE_KEY
    ssh_opts+=(-o IdentitiesOnly=yes -i "$work_dir/id_deploy")
  fi
}

# on_target VERB ARGS...: one shim command over the shared connection.
on_target() {
  ssh "${ssh_opts[@]}" -o ControlMaster=no "$(target_address)" bash -s -- "$@" <"$shim"
}

ensure_closure_local() {
  step "Checking that $SYSTEM_CLOSURE is in the local store"
  if nix-store --check-validity "$SYSTEM_CLOSURE" 2>/dev/null; then
    return
  fi
  local built
  if [[ -n $FLAKE_ATTR ]]; then
    info "not present; building FLAKE_ATTR=$FLAKE_ATTR"
    built=$(nix "${nix_flags[@]}" build --no-link --json "$FLAKE_ATTR" | jq -r '.[0].outputs.out') ||
      abort "$EXIT_BAD_INPUT" "FLAKE_ATTR='$FLAKE_ATTR' did not build"
    [[ $built == "$SYSTEM_CLOSURE" ]] ||
      abort "$EXIT_BAD_INPUT" "FLAKE_ATTR='$FLAKE_ATTR' built $built; expected SYSTEM_CLOSURE=$SYSTEM_CLOSURE"
  else
    info "not present; trying the configured substituters"
    nix-store --realise "$SYSTEM_CLOSURE" >/dev/null ||
      abort "$EXIT_BAD_INPUT" "SYSTEM_CLOSURE='$SYSTEM_CLOSURE' is not in the local store and no substituter has it; build it first or set FLAKE_ATTR"
  fi
}

open_connection() {
  step "Connecting to $(target_address) port $TARGET_PORT (pinned host key $(fingerprint "$HOST_KEY"))"
  local status=0
  wait_for_ssh "connect" "${ssh_opts[@]}" -o ControlMaster=yes -o ControlPersist=60 \
    -f -N "$(target_address)" || status=$?
  if ((status == 10)); then
    local presented
    presented=$(ssh-keyscan -T 10 -p "$TARGET_PORT" "$TARGET_HOST" 2>/dev/null | cut -d' ' -f2- | ssh-keygen -lf - 2>/dev/null |
      awk '{printf "%s%s %s", sep, $2, $NF; sep = ", "}') || true
    abort "$EXIT_REFUSED" "host key mismatch: $(target_address) port $TARGET_PORT does not present the pinned HOST_KEY (expected $(fingerprint "$HOST_KEY"); it presents: ${presented:-unknown}); nothing was copied"
  fi
}

# read_target_state: what the target runs now; exits 0 if that is SYSTEM_CLOSURE.
read_target_state() {
  local state profile_path
  state=$(on_target current-system) || abort "$EXIT_REFUSED" "could not read the target's current system"
  previous_closure=$(sed -n 's/^current=//p' <<<"$state")
  profile_path=$(sed -n 's/^profile=//p' <<<"$state")
  previous_generation=$(sed -n 's/^generation=//p' <<<"$state")
  if [[ $previous_closure == "$SYSTEM_CLOSURE" && $profile_path == "$SYSTEM_CLOSURE" ]]; then
    step "Nothing to do: the target already runs $SYSTEM_CLOSURE"
    exit 0
  fi
  info "the target runs generation $previous_generation: ${previous_closure:-nothing yet}"
}

check_space() {
  step "Checking free space on the target"
  local closure_paths missing=() missing_text needed=0 space nix_free boot_free boot_needed=0 file i
  mapfile -t closure_paths < <(nix-store --query --requisites "$SYSTEM_CLOSURE")
  # In chunks: sshd hands the command line to the shell as one argument,
  # which Linux limits to 128 KiB (a NixOS closure has a few thousand paths).
  for ((i = 0; i < ${#closure_paths[@]}; i += 500)); do
    missing_text=$(on_target missing-paths "${closure_paths[@]:i:500}") ||
      abort "$EXIT_REFUSED" "could not ask the target which store paths it lacks"
    [[ -z $missing_text ]] || mapfile -t -O "${#missing[@]}" missing <<<"$missing_text"
  done
  if ((${#missing[@]} > 0)); then
    needed=$(nix-store --query --size "${missing[@]}" | awk '{sum += $1} END {print sum + 0}')
  fi
  space=$(on_target free-space /nix /boot) || abort "$EXIT_REFUSED" "could not read free space on the target"
  nix_free=$(sed -n 's|^/nix=||p' <<<"$space")
  boot_free=$(sed -n 's|^/boot=||p' <<<"$space")
  info "/nix: ${#missing[@]} of ${#closure_paths[@]} paths missing, $needed bytes needed, $nix_free bytes available"
  ((needed <= nix_free)) ||
    abort "$EXIT_REFUSED" "not enough space in the target's /nix: needed $needed bytes ($((needed / 1048576)) MiB, ${#missing[@]} missing paths), available $nix_free bytes ($((nix_free / 1048576)) MiB); nothing was copied"
  for file in kernel initrd; do
    if [[ -e $SYSTEM_CLOSURE/$file ]]; then
      boot_needed=$((boot_needed + $(du -bL "$SYSTEM_CLOSURE/$file" | cut -f1)))
    fi
  done
  if [[ -n $boot_free ]] && ((boot_needed > 0)); then
    info "/boot: $boot_needed bytes needed for kernel+initrd, $boot_free bytes available"
    ((boot_needed <= boot_free)) ||
      abort "$EXIT_REFUSED" "not enough space in the target's /boot for one more generation: needed $boot_needed bytes (kernel+initrd), available $boot_free bytes; nothing was copied"
  fi
}

copy_closure() {
  step "Copying the closure (nix copy over the open connection)"
  local attempt=1
  # NIX_SSHOPTS is split on whitespace: every value in ssh_opts is space-free.
  until NIX_SSHOPTS="${ssh_opts[*]} -o ControlMaster=no" nix "${nix_flags[@]}" copy \
    --to "ssh-ng://$(target_address)" --substitute-on-destination --no-check-sigs "$SYSTEM_CLOSURE"; do
    ((attempt < copy_attempts)) ||
      abort "$EXIT_REFUSED" "nix copy failed $attempt times; the target's system was not changed"
    info "nix copy attempt $attempt/$copy_attempts failed; retrying in 5s"
    sleep 5
    attempt=$((attempt + 1))
  done
}

set_profile() {
  step "Setting the system profile to $SYSTEM_CLOSURE"
  new_generation=$(on_target set-profile "$SYSTEM_CLOSURE" | tail -n 1) ||
    abort "$EXIT_REFUSED" "could not set the target's system profile; the target runs generation $previous_generation unchanged"
  info "new generation: $new_generation"
}

arm_rollback() {
  step "Arming the target's rollback to generation $previous_generation in ${ROLLBACK_DEADLINE}s"
  if ((previous_generation == 0)); then
    info "no previous generation on the target: nothing to roll back to, no timer armed"
    return 0
  fi
  on_target arm-rollback "$previous_generation" "$ROLLBACK_DEADLINE" >&2
}

activate() {
  step "Activating generation $new_generation (switch-to-configuration switch)"
  on_target activate "$SYSTEM_CLOSURE" "$activate_timeout" >&2
}

test_hook() {
  if [[ ${DEPLOY_TEST_STOP_AFTER:-} == "$1" ]]; then
    abort "$EXIT_UNKNOWN" "test hook DEPLOY_TEST_STOP_AFTER=$1: stopping unconfirmed; the target rolls back to generation $previous_generation after ${ROLLBACK_DEADLINE}s"
  fi
}

# check_health: HEALTH_URL answers 2xx (with HEALTH_EXPECT) within
# HEALTH_TIMEOUT, and no systemd unit failed. Sets health_failure on failure.
health_failure=""
check_health() {
  step "Checking health: $HEALTH_URL (up to ${HEALTH_TIMEOUT}s), then failed units"
  local deadline=$((SECONDS + HEALTH_TIMEOUT)) remaining last="" units
  local curl_args=(--silent --show-error --fail --location --output "$work_dir/health.body")
  [[ -z $HEALTH_RESOLVE ]] || curl_args+=(--resolve "$HEALTH_RESOLVE")
  while :; do
    remaining=$((deadline - SECONDS))
    ((remaining >= 1)) || remaining=1
    if curl "${curl_args[@]}" --max-time "$((remaining < 10 ? remaining : 10))" "$HEALTH_URL" 2>"$work_dir/health.err"; then
      if [[ -z $HEALTH_EXPECT ]] || grep -qF -- "$HEALTH_EXPECT" "$work_dir/health.body"; then
        break
      fi
      last="the page does not contain HEALTH_EXPECT '$HEALTH_EXPECT'"
    else
      last=$(tail -n 1 "$work_dir/health.err")
    fi
    if ((SECONDS >= deadline)); then
      health_failure="health check: $HEALTH_URL did not pass within ${HEALTH_TIMEOUT}s ($last)"
      return 1
    fi
    sleep 2
  done
  if ! units=$(on_target failed-units); then
    health_failure="health check: could not list failed units on the target"
    return 1
  fi
  if [[ -n $units ]]; then
    health_failure="health check: failed systemd units: $(tr '\n' ' ' <<<"$units")"
    return 1
  fi
  info "healthy"
}

confirm() {
  step "Confirming: cancelling the target's rollback timer"
  ((previous_generation == 0)) || on_target confirm >&2
}

# roll_back REASON: after a failure past set_profile. Exits 3 or 4.
roll_back() {
  local reason=$1 result
  printf 'error: %s\n' "$reason" >&2
  if ((previous_generation == 0)); then
    abort "$EXIT_UNKNOWN" "no previous generation to roll back to; the target keeps generation $new_generation ($SYSTEM_CLOSURE); an operator must look"
  fi
  step "Rolling back to generation $previous_generation"
  if ! result=$(on_target rollback "$previous_generation" "$activate_timeout"); then
    abort "$EXIT_UNKNOWN" "rollback to generation $previous_generation failed after: $reason; state unknown (if the connection was lost before the rollback started, the target's own timer switches back within ${ROLLBACK_DEADLINE}s); an operator must look"
  fi
  local now_generation=${result%% *} now_closure=${result#* }
  info "the target runs generation $now_generation ($now_closure)"
  if ! check_health; then
    abort "$EXIT_UNKNOWN" "rolled back to generation $now_generation ($now_closure) after: $reason; but it is not healthy either: $health_failure"
  fi
  abort "$EXIT_ROLLED_BACK" "deploy failed: $reason; rolled back: the host runs generation $now_generation ($now_closure) again and passed the health check"
}

main() {
  parse_args "${BASH_SOURCE[0]}" "$@"
  parse_inputs
  install_exit_traps cleanup
  prepare_work_dir
  ensure_closure_local
  open_connection
  read_target_state
  check_space
  copy_closure
  set_profile
  if ! arm_rollback; then
    roll_back "arming the rollback timer failed"
  fi
  if ! activate; then
    roll_back "activation failed (switch-to-configuration switch of generation $new_generation)"
  fi
  test_hook activate
  if ! check_health; then
    roll_back "$health_failure"
  fi
  if ! confirm; then
    roll_back "confirm failed: the rollback timer had already fired (ROLLBACK_DEADLINE=${ROLLBACK_DEADLINE}s too short?)"
  fi
  step "Deployed: the host runs generation $new_generation ($SYSTEM_CLOSURE)"
}

main "$@"
