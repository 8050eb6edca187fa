# shellcheck shell=bash
# The host of the current stack, for the scripts an operator runs
# (data-backup.sh, backup.sh): TARGET_HOST and HOST_KEY, where unset, from
# `pulumi stack output --json` (ipv4, else ipv6; hostKey), run in the project
# directory. Sourced after common.sh; needs $verb (for messages), $work_dir
# and $script_dir.
# shellcheck disable=SC2154 # verb, work_dir, script_dir: the caller's

# The most seconds `pulumi stack output` may take (it may decrypt the state).
readonly PULUMI_TIMEOUT=120

# read_stack_outputs: TARGET_HOST and HOST_KEY, where unset, from the current
# stack's outputs (ipv4, else ipv6; hostKey).
read_stack_outputs() {
  local json address key
  ! has_value TARGET_HOST || ! has_value HOST_KEY || return 0
  command -v pulumi >/dev/null ||
    abort "$EXIT_BAD_INPUT" "TARGET_HOST and HOST_KEY are not both set, and pulumi is not on PATH to read them from the stack (pulumi stack output): set them, or run inside 'nix develop ./nix'"
  command -v jq >/dev/null ||
    abort "$EXIT_BAD_INPUT" "jq is not on PATH to read the stack's outputs: set TARGET_HOST and HOST_KEY, or run inside 'nix develop ./nix'"
  step "$verb: reading the host from the stack (pulumi stack output --json)"
  # --show-secrets: behind Cloudflare's proxy the addresses are secret outputs.
  json=$(cd "$script_dir/.." && timeout "$PULUMI_TIMEOUT" pulumi stack output --json --show-secrets 2>"$work_dir/pulumi.err") ||
    abort "$EXIT_BAD_INPUT" "pulumi stack output --json failed (exit $?): $(tail -n 3 "$work_dir/pulumi.err" | tr '\n' ' ' | sed 's/ $//'); set TARGET_HOST and HOST_KEY, or select the stack (pulumi stack select)"
  address=$(jq -r 'if type == "object" then (.ipv4 // .ipv6 // "") else "" end' <<<"$json" 2>/dev/null) || address=""
  key=$(jq -r 'if type == "object" then (.hostKey // "") else "" end' <<<"$json" 2>/dev/null) || key=""
  if ! has_value TARGET_HOST; then
    [[ -n $address ]] || abort "$EXIT_BAD_INPUT" "the stack has no output ipv4 or ipv6 (is it deployed? pulumi up first); set TARGET_HOST to reach the host"
    TARGET_HOST=$address
    info "TARGET_HOST=$(shown "$TARGET_HOST") (stack output)"
  fi
  if ! has_value HOST_KEY; then
    [[ -n $key ]] || abort "$EXIT_BAD_INPUT" "the stack has no output hostKey (is it deployed? pulumi up first); set HOST_KEY to the host's public key line"
    HOST_KEY=$key
    info "HOST_KEY: $(fingerprint "$HOST_KEY" 2>/dev/null || shown "$HOST_KEY") (stack output)"
  fi
}
