#!/usr/bin/env bash
# Deploys a NixOS system closure to a host that install.sh installed, and
# commits it only once it is verified: pinned host key, one SSH connection,
# one deploy at a time (a lock on the target), copy (or build on the target),
# activate without making it the boot default, health-check the site through
# every published address, then make it the boot default. A rollback timer on
# the target, armed before anything changes, returns the host to the system
# that was running when the deploy started unless the deploy commits.
# With HOST_SECRETS set, the host's secrets (/var/lib/blog-secrets/<name>)
# become exactly that set, delivered inside the same connection before the
# activation, and go back with the system on a rollback.
#
# Input (environment; secrets only here, never arguments): TARGET_HOST,
# TARGET_PORT, TARGET_USER, HOST_KEY, SSH_PRIVATE_KEY, CONNECT_ATTEMPTS,
# CONNECT_TIMEOUT, SYSTEM_CLOSURE, FLAKE_ATTR, BUILD_ON, HEALTH_URL, DOMAIN,
# HEALTH_EXPECT, HEALTH_PINNED_KEY, HEALTH_VIA, PUBLISHED_ADDRESSES, HEALTH_RESOLVE,
# HEALTH_TIMEOUT, HEALTH_ACME, ACME_TIMEOUT, ROLLBACK_DEADLINE, LOCK_WAIT,
# DEPLOY_ORIGIN, HOST_SECRETS and one HOST_SECRET_<name> per name it lists
# (see the README's table).
# Exit codes: 0 deployed (runs and boots SYSTEM_CLOSURE, healthy) or nothing
# to change and healthy, 1 bad input, 2 refused before changing the target
# (another deploy holds the lock, unreachable, no space, copy or build
# failed), 3 failed and rolled back (the system that ran before runs and boots
# again, health re-checked), 4 rollback failed / state unknown: an operator
# must look, 5 the target already ran and booted SYSTEM_CLOSURE (nothing was
# changed, nothing to roll back to) and it fails the health check.
# On exit 0 the last line on stdout is BLOG_DEPLOYED_SYSTEM=<SYSTEM_CLOSURE>
# (everything else goes to stderr): what the host runs, for the stack's
# output systemClosure.
#
# Test hooks (integration tests only): DEPLOY_TEST_STOP_AFTER=activate stops
# right after activation, as if the connection dropped there, so the target's
# own timer has to act. DEPLOY_TEST_PAUSE_AFTER=begin|deliver|activate with
# DEPLOY_TEST_PAUSE_FILE=PATH creates PATH at that point and waits (at most
# 120 s) until it is removed ("deliver": right after the secrets were sent).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/common.sh
source "$script_dir/lib/common.sh"
readonly shim=$script_dir/target-shim.sh
readonly nix_flags=(--extra-experimental-features 'nix-command flakes')
readonly copy_attempts=3
readonly activate_timeout=600 # seconds one switch-to-configuration may take
readonly build_timeout=7200   # seconds a build on the target may take
readonly keepalive_every=20   # seconds between pings to the shim during a copy
# Missing paths of at most this many bytes of NAR in all go inside the shim's
# session, in the batch that prepares and activates (nix-store --export here,
# --import there: no second session, no round trips of their own); more go
# by nix copy, with its retries.
readonly inline_copy_max=$((16 * 1024 * 1024))
readonly EXIT_UNHEALTHY=5     # runs SYSTEM_CLOSURE already, unchanged, and fails the health check

work_dir=""
control_path=""
ssh_opts=()
health_url_host=""
health_url_port=""
addresses=()     # PUBLISHED_ADDRESSES, one an element
drv_path=""      # the derivation, when the closure is built (not just copied)
build_where=""   # "" (already local), local, remote or substitute (on the target)
return_to=""     # the system that ran when the deploy started ("" if none)
recovering=0
shim_in=""
shim_out=""
shim_pid=""
sizes_pid=""  # measure_closure's job, while the connection opens
shim_abandon=0
shim_ended=0  # the shim answered "end": the lock is released, the session over
send_failed=0 # a request could not be sent: the session is gone
reply=()
request_payload=""
current=""      # what the target runs, its system profile and its generation,
profile_path="" # as the last "begin" read them
generation=0
closure_changed=1 # 0: the target runs and boots SYSTEM_CLOSURE already (only secrets change)
failed_before=()  # the target's failed units when the deploy began: they do not fail it
new_failed=() old_failed=() # split_failed's answer: failed now and not before; failed before too

# Secrets (HOST_SECRETS). Values stay in the environment until they are sent;
# their hashes are compared, never printed.
secrets_requested=0   # HOST_SECRETS is set
secret_names=()       # its names, each once
declare -A secrets_before=() # name -> sha256 of the target's set when the deploy started
secrets_added=() secrets_changed=() secrets_removed=()
secrets_differ=0   # the target's set is not HOST_SECRETS'
secrets_delivered=0 # the target may hold the new set now (a rollback must bring the old one back)
secrets_now=""     # what check_secrets_state found: new, old, other or unknown
secrets_payload_bytes=0
payload_status=0

parse_inputs() {
  begin_input_checks
  require_set TARGET_HOST
  require_set HOST_KEY
  require_set SYSTEM_CLOSURE
  TARGET_PORT=${TARGET_PORT:-22}
  TARGET_USER=${TARGET_USER:-root}
  CONNECT_ATTEMPTS=${CONNECT_ATTEMPTS:-30}
  CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-600}
  HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-60}
  ROLLBACK_DEADLINE=${ROLLBACK_DEADLINE:-120}
  LOCK_WAIT=${LOCK_WAIT:-300}
  FLAKE_ATTR=${FLAKE_ATTR:-}
  BUILD_ON=${BUILD_ON:-auto}
  HEALTH_EXPECT=${HEALTH_EXPECT:-}
  HEALTH_RESOLVE=${HEALTH_RESOLVE:-}
  HEALTH_PINNED_KEY=${HEALTH_PINNED_KEY:-}
  HEALTH_VIA=${HEALTH_VIA:-direct}
  [[ $HEALTH_VIA == direct || $HEALTH_VIA == ssh ]] ||
    bad_input "HEALTH_VIA='$HEALTH_VIA' is not valid; expected direct (through each published address) or ssh (through the SSH connection, to the host's own port)"
  HEALTH_ACME=${HEALTH_ACME:-off}
  [[ $HEALTH_ACME =~ ^(off|placeholder|issued)$ ]] ||
    bad_input "HEALTH_ACME='$HEALTH_ACME' is not valid; expected off, placeholder (before the records point at the host: accept the ACME module's self-signed placeholder while the host has never had its certificate) or issued (after: order it now and wait for it)"
  ACME_TIMEOUT=${ACME_TIMEOUT:-600}
  DEPLOY_ORIGIN=${DEPLOY_ORIGIN:-${USER:-$(id -un)}@$(uname -n) pid $$}
  DEPLOY_ORIGIN=${DEPLOY_ORIGIN//[^[:print:]]/?}
  if [[ -z ${HEALTH_URL:-} ]]; then
    HEALTH_URL=""
    [[ -n ${DOMAIN:-} ]] || bad_input "HEALTH_URL is not set and DOMAIN is not set either; one is required"
    [[ -z ${DOMAIN:-} ]] || HEALTH_URL="https://$DOMAIN/"
  fi
  require_uint TARGET_PORT 1
  require_uint CONNECT_ATTEMPTS 1
  require_uint CONNECT_TIMEOUT 1
  require_uint HEALTH_TIMEOUT 1
  require_uint ROLLBACK_DEADLINE 1
  require_uint LOCK_WAIT 0
  require_uint ACME_TIMEOUT 1
  [[ ! $ROLLBACK_DEADLINE =~ ^[0-9]+$ || ! $HEALTH_TIMEOUT =~ ^[0-9]+$ ]] || ((ROLLBACK_DEADLINE > HEALTH_TIMEOUT)) ||
    bad_input "ROLLBACK_DEADLINE='$ROLLBACK_DEADLINE' is not valid; expected more than HEALTH_TIMEOUT ($HEALTH_TIMEOUT)"
  [[ -z ${HOST_KEY:-} ]] || require_host_key HOST_KEY
  check_proxy_jump
  [[ -z ${SYSTEM_CLOSURE:-} || $SYSTEM_CLOSURE =~ $store_path_re ]] ||
    bad_input "SYSTEM_CLOSURE='$(shown "$SYSTEM_CLOSURE")' is not valid; expected a store path /nix/store/<32 characters of Nix's base32>-<name>"
  [[ $BUILD_ON =~ ^(auto|local|remote)$ ]] ||
    bad_input "BUILD_ON='$BUILD_ON' is not valid; expected auto, local or remote"
  parse_health_url
  if [[ $HEALTH_ACME != off && -n $health_url_host ]]; then
    [[ $HEALTH_URL == https://* && $health_url_host =~ ^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$ ]] ||
      bad_input "HEALTH_ACME=$HEALTH_ACME needs HEALTH_URL='$HEALTH_URL' to be https://<domain>/ (the certificate's name)"
  fi
  parse_addresses
  parse_pinned_key
  parse_secrets
  end_input_checks
}

parse_pinned_key() {
  local pin='sha256//[A-Za-z0-9+/]{43}='
  [[ -n $HEALTH_PINNED_KEY ]] || return 0
  [[ $HEALTH_PINNED_KEY =~ ^$pin(\;$pin)*$ ]] ||
    bad_input "HEALTH_PINNED_KEY='$HEALTH_PINNED_KEY' is not valid; expected curl's public key pin, sha256//<base64 of the SHA-256 of the certificate's public key> (several joined by ';')"
  [[ -z $HEALTH_URL || $HEALTH_URL == https://* ]] ||
    bad_input "HEALTH_PINNED_KEY is set, but HEALTH_URL='$HEALTH_URL' is not https://; a pin needs TLS"
}

# parse_secrets: HOST_SECRETS' names (each once), each with its HOST_SECRET_<name>,
# which children (ssh, nix, curl) do not inherit. Names only in messages.
parse_secrets() {
  local list=() name var
  [[ -v HOST_SECRETS ]] || return 0
  secrets_requested=1
  read -r -d '' -a list <<<"$HOST_SECRETS" || true
  for name in "${list[@]}"; do
    if [[ ! $name =~ $secret_name_re ]]; then
      bad_input "HOST_SECRETS lists '${name//[^[:print:]]/?}', which is not a valid secret name; expected letters, digits and _, starting with a letter, at most 64 characters"
      continue
    fi
    [[ " ${secret_names[*]} " != *" $name "* ]] || continue
    var=HOST_SECRET_$name
    if [[ ! -v $var ]]; then
      bad_input "$var is not set; HOST_SECRETS lists '$name', and every secret it lists needs its value in HOST_SECRET_<name>"
      continue
    fi
    export -n "${var?}"
    secret_names+=("$name")
  done
}

parse_health_url() {
  local re='^(https?)://(\[[0-9A-Fa-f:.]+\]|[^]/:?#[]+)(:([0-9]+))?([/?#].*)?$'
  [[ -n $HEALTH_URL ]] || return 0
  if [[ ! $HEALTH_URL =~ $re ]]; then
    bad_input "HEALTH_URL='$HEALTH_URL' is not valid; expected http(s)://host[:port]/path"
    return 0
  fi
  health_url_host=${BASH_REMATCH[2]}
  health_url_port=${BASH_REMATCH[4]}
  if [[ -z $health_url_port ]]; then
    health_url_port=443
    [[ ${BASH_REMATCH[1]} == https ]] || health_url_port=80
  fi
}

parse_addresses() {
  parse_published_addresses
  addresses=("${published_addresses[@]}")
  # Through SSH the check does not use the addresses (the firewall admits only the proxy there).
  [[ $HEALTH_VIA == direct ]] || addresses=()
  if ((${#addresses[@]} > 0)) && [[ -n $HEALTH_RESOLVE ]]; then
    bad_input "HEALTH_RESOLVE='$HEALTH_RESOLVE' is not valid together with PUBLISHED_ADDRESSES; expected one of the two"
  fi
}

cleanup() {
  local status=$?
  in_cleanup=1
  if [[ -n $shim_in ]] && ((shim_abandon == 0 && shim_ended == 0)); then
    request 5 end || true
  fi
  close_shim
  close_master
  if [[ -n $sizes_pid ]]; then
    kill "$sizes_pid" 2>/dev/null || true
    wait "$sizes_pid" 2>/dev/null || true
  fi
  [[ -z $work_dir ]] || rm -rf "$work_dir"
  exit "$status"
}

# wait_gone PID: returns once PID has exited (a zombie its parent has not
# reaped yet counts as exited), checked every 10 ms; fails after 5 s. Reads
# /proc/PID/stat (no fork): its third field, after the command in
# parentheses, is the state.
wait_gone() {
  local tries=500 stat=""
  while { read -r stat <"/proc/$1/stat"; } 2>/dev/null && [[ ${stat##*) } != Z* ]]; do
    ((--tries > 0)) || return 1
    sleep 0.01
  done
}

# close_master: ends the SSH control master (by its pid, which it reports:
# `ssh -O exit` would leave it lingering for a second or two) and waits (at
# most 5 s) until it has exited.
close_master() {
  local master_pid
  [[ -n $control_path && -S $control_path ]] || return 0
  master_pid=$(ssh -F /dev/null -o ControlPath="$control_path" -O check "$(target_address)" 2>&1 | sed -n 's/.*(pid=\([0-9]*\)).*/\1/p')
  if [[ -n $master_pid ]]; then
    kill -TERM "$master_pid" 2>/dev/null || true
    wait_gone "$master_pid" || true
  fi
  rm -f "$control_path"
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
  local identity=()
  identity_options identity SSH_PRIVATE_KEY "$work_dir/id_deploy"
  ssh_opts+=("${identity[@]}")
}

# --- Where the closure comes from ---------------------------------------

# nix_setting NAME: a Nix setting of this machine, as one line (lists joined).
nix_setting() {
  { nix "${nix_flags[@]}" config show --json 2>/dev/null || nix "${nix_flags[@]}" show-config --json; } |
    jq -r --arg name "$1" '.[$name].value | if type == "array" then join(" ") else tostring end'
}

# can_build_here SYSTEM: this machine, with its configured builders, builds
# for SYSTEM. Asked the way nixos-anywhere 1.13.0 asks (checkBuildLocally in
# src/nixos-anywhere.sh): build a trivial derivation for that system.
can_build_here() {
  local system=$1 platforms
  platforms=" $(nix_setting system) $(nix_setting extra-platforms) "
  [[ $platforms != *" $system "* ]] || return 0
  info "this machine is $(nix_setting system); asking it (and its builders) to build a trivial $system derivation"
  timeout 300 nix "${nix_flags[@]}" build --no-link --impure --expr \
    "derivation { name = \"blog-build-probe-$(date +%s%N)\"; system = \"$system\"; builder = \"/bin/sh\"; args = [ \"-c\" \"echo > \$out\" ]; }" \
    2>/dev/null
}

# realise_closure: SYSTEM_CLOSURE is in the local store, or it is known where
# it will be built (build_where, drv_path).
realise_closure() {
  step "Checking that $SYSTEM_CLOSURE is in the local store"
  # Its closure's paths, for the space check; the query fails for a path
  # that is not valid here.
  if nix-store --query --requisites "$SYSTEM_CLOSURE" >"$work_dir/closure.paths" 2>/dev/null; then
    return
  fi
  if [[ -z $FLAKE_ATTR ]]; then
    if [[ $BUILD_ON == remote ]]; then
      info "not present; the target will substitute it (BUILD_ON=remote, no FLAKE_ATTR)"
      build_where=substitute
      return
    fi
    info "not present; trying the configured substituters"
    nix-store --realise "$SYSTEM_CLOSURE" >/dev/null ||
      abort "$EXIT_BAD_INPUT" "SYSTEM_CLOSURE='$SYSTEM_CLOSURE' is not in the local store and no substituter has it; build it first or set FLAKE_ATTR"
    return
  fi
  local facts out system
  info "not present; evaluating FLAKE_ATTR=$FLAKE_ATTR"
  facts=$(nix "${nix_flags[@]}" eval --json "$FLAKE_ATTR" --apply 'd: { drv = d.drvPath; out = d.outPath; system = d.system; }') ||
    abort "$EXIT_BAD_INPUT" "FLAKE_ATTR='$FLAKE_ATTR' did not evaluate to a derivation"
  drv_path=$(jq -r .drv <<<"$facts")
  out=$(jq -r .out <<<"$facts")
  system=$(jq -r .system <<<"$facts")
  # What the evaluation says is data too: the system goes into a Nix expression
  # (can_build_here), the derivation onto command lines.
  [[ $out == "$SYSTEM_CLOSURE" ]] ||
    abort "$EXIT_BAD_INPUT" "FLAKE_ATTR='$FLAKE_ATTR' builds $(shown "$out"); expected SYSTEM_CLOSURE=$SYSTEM_CLOSURE"
  [[ $drv_path =~ $store_path_re && $drv_path == *.drv ]] ||
    abort "$EXIT_BAD_INPUT" "FLAKE_ATTR='$FLAKE_ATTR' gave the derivation '$(shown "$drv_path")'; expected a store path ending in .drv"
  [[ $system =~ ^[abcdefghijklmnopqrstuvwxyz0123456789_]{1,32}-[abcdefghijklmnopqrstuvwxyz0123456789_]{1,32}$ ]] ||
    abort "$EXIT_BAD_INPUT" "FLAKE_ATTR='$FLAKE_ATTR' builds for the system '$(shown "$system")'; expected a Nix system such as x86_64-linux"
  build_where=$BUILD_ON
  if [[ $build_where == auto ]]; then
    build_where=remote
    if can_build_here "$system"; then build_where=local; fi
    info "BUILD_ON=auto: a $system system is built $([[ $build_where == local ]] && echo here || echo 'on the target')"
  fi
  if [[ $build_where == local ]]; then
    step "Building $drv_path here"
    timeout "$build_timeout" nix-store --realise "$drv_path" >/dev/null ||
      abort "$EXIT_BAD_INPUT" "FLAKE_ATTR='$FLAKE_ATTR' did not build here ($system; set BUILD_ON=remote to build on the target)"
    build_where=""
  fi
}

# measure_closure: for a closure that is here, in the background while the
# connection opens: the NAR size of each of its paths (closure.sizes, a line
# per line of closure.paths) and the bytes of its kernel and initrd
# (boot.sizes), which check_space reads (measured_sizes).
measure_closure() {
  [[ -z $build_where && -s $work_dir/closure.paths ]] || return 0
  (
    trap - EXIT
    xargs -a "$work_dir/closure.paths" nix-store --query --size >"$work_dir/closure.sizes"
    for file in kernel initrd; do
      [[ ! -e $SYSTEM_CLOSURE/$file ]] || du -bL "$SYSTEM_CLOSURE/$file" | cut -f1
    done >"$work_dir/boot.sizes"
  ) &
  sizes_pid=$!
}

# measured_sizes: waits for measure_closure; closure_sizes := the NAR bytes
# of each of closure_paths (same index), boot_bytes := its kernel's and
# initrd's bytes; each checked to be a whole number.
closure_sizes=()
boot_bytes=0
measured_sizes() {
  local status=0 size bad
  # Not started yet if the closure's paths were listed only now (a substituted closure).
  [[ -n $sizes_pid ]] || measure_closure
  wait "$sizes_pid" || status=$?
  sizes_pid=""
  ((status == 0)) || abort "$EXIT_REFUSED" "nix-store --query --size of the closure's paths, or du of its kernel and initrd, failed (status $status); nothing was copied"
  bad=$(all_lines_match "$uint_re" "$work_dir/closure.sizes") ||
    abort "$EXIT_REFUSED" "nix-store --query --size gave '$(shown "$bad")' for a path of the closure; expected a size in bytes"
  mapfile -t closure_sizes <"$work_dir/closure.sizes"
  ((${#closure_sizes[@]} == ${#closure_paths[@]})) ||
    abort "$EXIT_REFUSED" "nix-store --query --size gave ${#closure_sizes[@]} sizes for the closure's ${#closure_paths[@]} paths; nothing was copied"
  bad=$(all_lines_match "$uint_re" "$work_dir/boot.sizes") ||
    abort "$EXIT_REFUSED" "du gave '$(shown "$bad")' for the kernel or initrd of $SYSTEM_CLOSURE; expected a size in bytes"
  boot_bytes=0
  while IFS= read -r size; do
    boot_bytes=$((boot_bytes + size))
  done <"$work_dir/boot.sizes"
}

# --- The connection and the shim ----------------------------------------

open_connection() {
  step "Connecting to $(target_address) port $TARGET_PORT (pinned host key $(fingerprint "$HOST_KEY"))"
  local status=0
  wait_for_ssh "connect" "${ssh_opts[@]}" -o ControlMaster=yes -o ControlPersist=60 \
    -f -N "$(target_address)" || status=$?
  if ((status == 10)); then
    abort "$ssh_wait_exit" "host key mismatch: $(target_address) port $TARGET_PORT does not present the pinned HOST_KEY (expected $(fingerprint "$HOST_KEY"); it presents: $(presented_keys "$TARGET_HOST" "$TARGET_PORT")); nothing was copied"
  fi
}

# start_shim: one SSH session (over the control connection) that runs
# target-shim.sh, sent once as the session's command (after lib/patterns.sh,
# the forms both sides check); requests go to its stdin through a FIFO,
# replies come back through another. Its messages reach our stderr as
# printable text only (sanitize_stream).
start_shim() {
  local text quoted
  text=$(<"$script_dir/lib/patterns.sh")$'\n'$(<"$shim")
  quoted="'${text//\'/\'\\\'\'}'"
  rm -f "$work_dir/to-shim" "$work_dir/from-shim"
  mkfifo -m 600 "$work_dir/to-shim" "$work_dir/from-shim"
  ssh "${ssh_opts[@]}" -o ControlMaster=no "$(target_address)" "bash -c $quoted blog-deploy-shim serve" \
    <"$work_dir/to-shim" >"$work_dir/from-shim" 2> >(sanitize_stream >&2) &
  shim_pid=$!
  exec {shim_in}>"$work_dir/to-shim" {shim_out}<"$work_dir/from-shim"
  send_failed=0 shim_ended=0
}

close_shim() {
  [[ -z $shim_in ]] || exec {shim_in}>&-
  [[ -z $shim_out ]] || exec {shim_out}<&-
  shim_in="" shim_out=""
  if [[ -n $shim_pid ]]; then
    # Ends by itself on EOF; bounded all the same.
    wait_gone "$shim_pid" || kill "$shim_pid" 2>/dev/null || true
    shim_pid=""
  fi
}

# --- The target's replies: data, checked before any use ------------------
# Every key a reply may carry, and the form its value must have. request()
# checks each line of a reply against this table before it returns: a line
# with another key, or a value of another form, is refused before anything
# reads it (no arithmetic, pattern, command line or message sees it
# unchecked). A new reply field needs its entry here, or every reply that
# carries it is refused.
declare -rA reply_kinds=(
  [current]=store_path_or_empty [profile]=store_path_or_empty [generation]=uint
  [holder]=text [takeover]=text [recovered]=store_path_or_dash [unconfirmed]=store_path
  [secrets]=outcome [restarted]=unit [left]=unit_state
  [missing]=store_path [nix_free]=uint [boot_free]=uint_or_empty [boot_needed]=uint
  [out]=store_path [armed]=uint [repaired]=uint [activated]=store_path
  [unit]=unit [secret]=secret_hash [set]=set_name [decided]=decision
  [acme]=acme_state [chain]=base64 [ordered]=bit [switch_status]=uint
)
readonly reply_max_lines=1000000 reply_max_length=4096
target_changed=0 # 1 once a request may have changed the target (a refused reply then exits 4)
in_cleanup=0     # 1 in the exit trap: a refused reply there ends nothing

# reply_form_ok KIND VALUE: VALUE has the form KIND names (lib/common.sh's
# value_form_ok; text here is at most 1000 printable characters).
reply_form_ok() {
  case $1 in
  text) ((${#2} <= 1000)) && printable "$2" ;;
  *) value_form_ok "$1" "$2" ;;
  esac
}

# reply_kind_expected KIND: what a message says was expected.
reply_kind_expected() {
  case $1 in
  uint | uint_or_empty) echo "a whole number (digits, no leading zero, at most 18)" ;;
  store_path*) echo "a store path /nix/store/<hash>-<name>" ;;
  unit) echo "a systemd unit name" ;;
  unit_state) echo "a systemd unit name and its state" ;;
  secret_hash) echo "a secret's name and the sha256 of its value (64 hex digits)" ;;
  set_name) echo "a secret set's name, set-<letters, digits, . _ ->" ;;
  outcome) echo "kept or restored" ;;
  decision) echo "commit or rollback" ;;
  acme_state) echo "none, pending or issued" ;;
  base64) echo "base64 text" ;;
  bit) echo "0 or 1" ;;
  text) echo "printable text of at most 1000 characters" ;;
  esac
}

# refuse_reply VERB WHAT: the target's reply to VERB is not what the shim
# sends. Exits: 2 before the target was changed, 4 after; in the exit trap
# it only forgets the reply (status 254), so the cleanup goes on.
refuse_reply() {
  reply=()
  if ((in_cleanup == 1)); then
    printf 'error: %s\n' "the target's reply to '$1' is not valid: $2; ignored" >&2
    return 254
  fi
  if ((target_changed == 0)); then
    abort "$EXIT_REFUSED" "the target's reply to '$1' is not valid: $2; the deploy trusts nothing else it says; nothing was changed"
  fi
  abort "$EXIT_UNKNOWN" "the target's reply to '$1' is not valid: $2; the deploy trusts nothing else it says; the target's rollback timer returns it to ${return_to:-the system it ran} unless it is committed; an operator must look"
}

# check_reply VERB: every line of `reply` is KEY=VALUE with a KEY of
# reply_kinds and a VALUE of its form; refuses the reply otherwise.
check_reply() {
  local line key
  for line in "${reply[@]}"; do
    key=${line%%=*}
    if [[ $line != *=* || ! -v reply_kinds[$key] ]]; then
      refuse_reply "$1" "the line '$(shown "$line")' is not one of its KEY=VALUE lines" || return
    elif ! reply_form_ok "${reply_kinds[$key]}" "${line#*=}"; then
      refuse_reply "$1" "$key='$(shown "${line#*=}")' is not $(reply_kind_expected "${reply_kinds[$key]}")" || return
    fi
  done
}

# request SECONDS VERB ARGS...: one request; its reply lines in `reply` (each
# checked against reply_kinds), its status as ours; 255 when the session is
# gone or gave no answer within SECONDS. request_payload, if set, follows the
# request line.
request() {
  local seconds=$1
  shift
  send_request "$@"
  read_reply "$seconds" "$1"
}

# send_request VERB ARGS...: sends one request (and request_payload) without
# waiting for its reply: a batch is several of these, then as many
# read_reply, in order (one round trip). "if-ok VERB ...": the shim runs it
# only if the request before it exited 0 (status 125 otherwise).
send_request() {
  local sent=0
  reply=()
  if [[ -n $shim_in ]]; then
    trap '' PIPE
    if printf '%s\n' "$*" 1>&"$shim_in" 2>/dev/null; then sent=1; fi
  fi
  untraced send_payload "$sent"
  trap - PIPE
  ((payload_status == 0)) || send_failed=1
}

# send_file_request FILE VERB ARGS...: sends one request followed by FILE's
# bytes, exactly (the request's arguments say how many).
send_file_request() {
  local file=$1
  shift
  send_request "$@"
  ((send_failed == 0)) || return 0
  trap '' PIPE
  cat "$file" 1>&"$shim_in" 2>/dev/null || send_failed=1
  trap - PIPE
}

# read_reply SECONDS VERB: the reply to the oldest request not yet read, in
# `reply` (checked), its status as ours (255: the session is gone, no answer
# within SECONDS, or the request could not be sent).
read_reply() {
  local seconds=$1 verb=$2 line status
  reply=()
  ((send_failed == 0)) || return 255
  [[ -n $shim_out ]] || return 255
  while IFS= read -r -t "$seconds" -u "$shim_out" line; do
    if [[ $line == '@@ '* ]]; then
      status=${line#@@ }
      # The status goes to `return`: digits, 0 to 255, nothing else.
      if [[ ! $status =~ ^(0|[123456789][0123456789]{0,2})$ ]] || ((status > 255)); then
        refuse_reply "$verb" "its status line '$(shown "$line")' is not '@@ <0 to 255>'" || return
      fi
      check_reply "$verb" || return
      return "$status"
    fi
    if ((${#line} > reply_max_length || ${#reply[@]} >= reply_max_lines)); then
      refuse_reply "$verb" "it is longer than any reply the shim sends (a line of ${#line} characters, or more than $reply_max_lines lines)" || return
    fi
    reply+=("$line")
  done
  return 255
}

# send_payload SENT: request_payload after the request line (if SENT is 1), then
# forgets it. Untraced: a payload may carry secrets' values.
send_payload() {
  payload_status=0
  if (($1 != 1)); then
    payload_status=255
  elif [[ -n $request_payload ]] && ! printf '%s\n' "$request_payload" 1>&"$shim_in" 2>/dev/null; then
    payload_status=255
  fi
  request_payload=""
}

# reply_value KEY: the value of the first KEY= line of the last reply (checked
# by request(); KEY must be one of reply_kinds).
reply_value() {
  local line
  [[ -v reply_kinds[$1] ]] || abort "$EXIT_UNKNOWN" "internal: the reply key '$1' is not in reply_kinds"
  for line in "${reply[@]}"; do
    if [[ $line == "$1="* ]]; then
      printf '%s\n' "${line#*=}"
      return 0
    fi
  done
  return 0
}

# reply_values KEY: every KEY= value of the last reply, one a line.
reply_values() {
  local line
  [[ -v reply_kinds[$1] ]] || abort "$EXIT_UNKNOWN" "internal: the reply key '$1' is not in reply_kinds"
  for line in "${reply[@]}"; do
    [[ $line != "$1="* ]] || printf '%s\n' "${line#*=}"
  done
}

# keepalive_start/keepalive_stop: pings the shim while this side works for a
# long time on its own (a copy), so its idle limit does not end the session.
keepalive_pid=""
keepalive_start() {
  (
    trap '' PIPE
    # The sleep keeps none of our pipes: killed or not, it holds nothing open.
    while sleep "$keepalive_every" >/dev/null 2>&1 {shim_in}>&- {shim_out}<&-; do
      printf 'ping\n' 1>&"$shim_in" || exit 0
    done
  ) &
  keepalive_pid=$!
}
keepalive_stop() {
  [[ -z $keepalive_pid ]] || kill "$keepalive_pid" 2>/dev/null || true
  keepalive_pid=""
}

# --- The steps -----------------------------------------------------------

test_hook() {
  if [[ ${DEPLOY_TEST_STOP_AFTER:-} == "$1" ]]; then
    shim_abandon=1
    abort "$EXIT_UNKNOWN" "test hook DEPLOY_TEST_STOP_AFTER=$1: stopping unconfirmed; the target returns to $return_to after ${ROLLBACK_DEADLINE}s"
  fi
  if [[ ${DEPLOY_TEST_PAUSE_AFTER:-} == "$1" ]]; then
    local waited=0
    : >"$DEPLOY_TEST_PAUSE_FILE"
    while [[ -e $DEPLOY_TEST_PAUSE_FILE ]] && ((waited < 1200)); do
      sleep 0.1
      waited=$((waited + 1))
    done
  fi
}

# Replies of requests batched with "begin" (read with it, used later):
# status "" when the request was not batched.
early_failed_status="" early_failed=()
early_secrets_status="" early_secrets=()
early_survey_status="" early_survey=()

# begin_deploy: the target's lock (waiting at most LOCK_WAIT), a takeover
# after a dead deployer, and what the target runs. In the same batch (one
# round trip; each runs only if the one before it succeeded): the failed
# units, the secrets' hashes (with HOST_SECRETS), and, for a closure that is
# here, which of its paths the target lacks and its free space.
begin_deploy() {
  local status=0 idle=$((HEALTH_TIMEOUT + 120)) fail=$EXIT_REFUSED unchanged="nothing was changed"
  if ((recovering == 1)); then
    fail=$EXIT_UNKNOWN
    unchanged="the target's rollback timer returns it to $return_to; an operator must look"
  fi
  step "Taking the target's deploy lock (waiting at most ${LOCK_WAIT}s for another deploy)"
  local begin_reply=() batch=0 survey=0
  early_failed_status="" early_secrets_status="" early_survey_status=""
  send_request begin "$SYSTEM_CLOSURE" "$LOCK_WAIT" "$idle" "$DEPLOY_ORIGIN"
  if ((recovering == 0)); then
    batch=1
    send_request if-ok failed-units
    ((secrets_requested == 0)) || send_request if-ok secrets-hashes
    if [[ -z $build_where && -s $work_dir/closure.paths ]]; then
      survey=1
      load_closure_paths
      request_payload=$(printf '%s\n' "${closure_paths[@]}")
      send_request if-ok survey "$((${#request_payload} + 1))" "$SYSTEM_CLOSURE"
    fi
  fi
  read_reply "$((LOCK_WAIT + 700))" begin || status=$?
  begin_reply=("${reply[@]}")
  # Read before anything is decided: the session's replies stay in order.
  if ((batch == 1)); then
    early_failed_status=0
    read_reply 60 failed-units || early_failed_status=$?
    early_failed=("${reply[@]}")
    if ((secrets_requested == 1)); then
      early_secrets_status=0
      read_reply 60 secrets-hashes || early_secrets_status=$?
      early_secrets=("${reply[@]}")
    fi
    if ((survey == 1)); then
      early_survey_status=0
      read_reply 120 survey || early_survey_status=$?
      early_survey=("${reply[@]}")
    fi
  fi
  reply=("${begin_reply[@]}")
  case $status in
  0) ;;
  75) abort "$fail" "another deploy holds the target's lock: $(reply_value holder); waited ${LOCK_WAIT}s (LOCK_WAIT); $unchanged" ;;
  255) abort "$fail" "lost the connection to the target while taking its lock; $unchanged" ;;
  *) abort "$fail" "could not take the target's deploy lock or read its state (status $status); $unchanged" ;;
  esac
  [[ -z $(reply_value takeover) ]] || info "took over the lock from a deploy that died: $(reply_value takeover)"
  [[ -z $(reply_value recovered) ]] ||
    info "that deploy's system $(reply_value unconfirmed) was never confirmed; the target returned to $(reply_value recovered) first"
  case $(reply_value secrets) in
  kept) info "a delivery of secrets left undecided (a reboot?) had been committed: kept" ;;
  restored) info "a delivery of secrets left undecided (a reboot?) was never committed: the set from before it is back (restarted: $(reply_values restarted | tr '\n' ' '))" ;;
  esac
  current=$(reply_value current)
  profile_path=$(reply_value profile)
  generation=$(reply_value generation)
  test_hook begin
}

# --- Failed units ----------------------------------------------------------
# switch-to-configuration exits 4 while any unit is failed after the switch
# (or restarting after a failure), one that failed before the deploy included:
# its start of every active target runs again what they want. A unit failed
# before the deploy began does not fail it; one failed by it does.

# failed_units ARRAY: the target's failed units into ARRAY (each checked to be
# a unit name); the request's status.
failed_units() {
  local status=0
  request 60 failed-units || status=$?
  ((status == 0)) || return "$status"
  units_from_reply "$1"
}

# units_from_reply ARRAY: the unit= lines of the last reply into ARRAY (each
# checked to be a unit name).
units_from_reply() {
  local -n units_ref=$1
  local unit
  units_ref=()
  while IFS= read -r unit; do
    [[ -n $unit ]] || continue
    [[ $unit =~ $unit_name_re ]] || unit="(not a unit name)"
    units_ref+=("$unit")
  done < <(reply_values unit)
}

# record_failed_units: the units failed before anything changes.
record_failed_units() {
  local status=0
  if [[ -n $early_failed_status ]]; then
    status=$early_failed_status
    reply=("${early_failed[@]}")
    ((status != 0)) || units_from_reply failed_before
  else
    failed_units failed_before || status=$?
  fi
  ((status != 255)) || abort "$EXIT_REFUSED" "lost the connection to the target while listing its failed units; nothing was changed"
  ((status == 0)) || abort "$EXIT_REFUSED" "could not list the target's failed units (status $status); nothing was changed"
  ((${#failed_before[@]} == 0)) || info "units failed before the deploy (they do not fail it): ${failed_before[*]}"
}

# split_failed UNIT...: new_failed (not failed before the deploy), old_failed (failed before too).
split_failed() {
  local unit
  new_failed=() old_failed=()
  for unit in "$@"; do
    if [[ " ${failed_before[*]} " == *" $unit "* ]]; then
      old_failed+=("$unit")
    else
      new_failed+=("$unit")
    fi
  done
}

# old_failed_note: what the message says about the units that failed before.
old_failed_note() {
  ((${#old_failed[@]} == 0)) || printf ' (failed before the deploy as well, not counted: %s)' "${old_failed[*]}"
}

# --- Secrets -------------------------------------------------------------
# Everything that touches a value, or its hash, runs untraced.

# target_secrets ARRAY: the target's secrets, name -> sha256, into ARRAY (an
# associative array); payload_status is the request's status (0: answered).
target_secrets() {
  local -n hashes_ref=$1
  local line
  hashes_ref=()
  payload_status=0
  if [[ -n $early_secrets_status ]]; then
    # Batched with "begin" (read_secrets): used once.
    payload_status=$early_secrets_status
    reply=("${early_secrets[@]}")
    early_secrets_status="" early_secrets=()
  else
    request 60 secrets-hashes || payload_status=$?
  fi
  # Each line checked by request(): "<secret name> <64 hex digits>".
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    # shellcheck disable=SC2034 # a nameref: this sets the caller's array
    hashes_ref[${line%% *}]=${line#* }
  done < <(reply_values secret)
}

# secret_hash NAME: the sha256 of HOST_SECRET_NAME's value (fed through a pipe).
secret_hash() {
  local var=HOST_SECRET_$1 hash
  hash=$(printf '%s' "${!var}" | sha256sum)
  printf '%s\n' "${hash%% *}"
}

# compare_secrets: secrets_added/changed/removed (names) between the set the
# target reported and HOST_SECRETS; secrets_differ.
compare_secrets() {
  local name
  secrets_added=() secrets_changed=() secrets_removed=()
  for name in "${secret_names[@]}"; do
    if [[ ! -v secrets_before[$name] ]]; then
      secrets_added+=("$name")
    elif [[ ${secrets_before[$name]} != "$(secret_hash "$name")" ]]; then
      secrets_changed+=("$name")
    fi
  done
  for name in "${!secrets_before[@]}"; do
    [[ " ${secret_names[*]} " == *" $name "* ]] || secrets_removed+=("$name")
  done
  mapfile -t secrets_removed < <(((${#secrets_removed[@]} == 0)) || printf '%s\n' "${secrets_removed[@]}" | sort)
  secrets_differ=0
  ((${#secrets_added[@]} + ${#secrets_changed[@]} + ${#secrets_removed[@]} == 0)) || secrets_differ=1
}

# check_secrets_state: secrets_now := new (the target holds HOST_SECRETS' set),
# old (the set it had when the deploy started), other, or unknown (no answer).
check_secrets_state() {
  local -A now=()
  local name is_new=1 is_old=1
  target_secrets now
  if ((payload_status != 0)); then
    secrets_now=unknown
    return 0
  fi
  ((${#now[@]} == ${#secret_names[@]})) || is_new=0
  for name in "${secret_names[@]}"; do
    [[ -v now[$name] && ${now[$name]} == "$(secret_hash "$name")" ]] || is_new=0
  done
  ((${#now[@]} == ${#secrets_before[@]})) || is_old=0
  for name in "${!secrets_before[@]}"; do
    [[ -v now[$name] && ${now[$name]} == "${secrets_before[$name]}" ]] || is_old=0
  done
  secrets_now=other
  if ((is_new == 1)); then
    secrets_now=new
  elif ((is_old == 1)); then
    secrets_now=old
  fi
}

# build_secrets_payload: request_payload := one "<name> <base64 of the value>"
# line per secret (the complete set), and its size in bytes.
build_secrets_payload() {
  local name var encoded
  request_payload=""
  for name in "${secret_names[@]}"; do
    var=HOST_SECRET_$name
    encoded=$(printf '%s' "${!var}" | base64 -w 0)
    request_payload+="$name $encoded"$'\n'
  done
  request_payload=${request_payload%$'\n'}
  secrets_payload_bytes=0
  [[ -z $request_payload ]] || secrets_payload_bytes=$((${#request_payload} + 1))
}

# secrets_summary: which names are added, changed and removed.
secrets_summary() {
  local summary=""
  ((${#secrets_added[@]} == 0)) || summary+="; added ${secrets_added[*]}"
  ((${#secrets_changed[@]} == 0)) || summary+="; changed ${secrets_changed[*]}"
  ((${#secrets_removed[@]} == 0)) || summary+="; removed ${secrets_removed[*]}"
  summary=${summary#; }
  printf '%s\n' "${summary:-unchanged}"
}

# read_secrets: with HOST_SECRETS set, the target's secrets (names and sha256),
# compared with HOST_SECRETS' values, which are hashed here.
read_secrets() {
  ((secrets_requested == 1)) || return 0
  step "Comparing the target's secrets with HOST_SECRETS (${#secret_names[@]}; by sha256)"
  untraced target_secrets secrets_before
  ((payload_status == 0)) || abort "$EXIT_REFUSED" "could not read the target's secrets (status $payload_status); nothing was changed"
  untraced compare_secrets
  info "secrets: $(secrets_summary)"
}

# report_deployed: the one line on stdout, for the stack (its output
# systemClosure): the system the host accepted. Printed only on success.
report_deployed() {
  printf 'BLOG_DEPLOYED_SYSTEM=%s\n' "$SYSTEM_CLOSURE"
}

# check_unchanged: the target already runs and boots SYSTEM_CLOSURE (a first
# install, a reinstall or a replacement ends here: nixos-anywhere put it
# there), so there is nothing to change and nothing to roll back to; it must
# pass the health check all the same, or the deploy fails with exit 5 and the
# stack does not call the host done.
check_unchanged() {
  local status=0
  await_acme_certificate || status=$?
  if ((status == 0)); then
    check_health || status=$?
  fi
  ((status != 255)) ||
    abort "$EXIT_UNHEALTHY" "the target already runs and boots $SYSTEM_CLOSURE (nothing was changed), but the health check could not finish: $health_failure"
  ((status == 0)) ||
    abort "$EXIT_UNHEALTHY" "the target already runs and boots $SYSTEM_CLOSURE (nothing was changed, so there is nothing to roll back to), but it is not healthy: $health_failure"
}

# read_target_state: exits 0 if the target already runs and boots SYSTEM_CLOSURE
# (and holds HOST_SECRETS' set, if given) and passes the health check, 5 if
# it fails it.
read_target_state() {
  if [[ $current == "$SYSTEM_CLOSURE" && $profile_path == "$SYSTEM_CLOSURE" ]]; then
    if ((secrets_differ == 0)); then
      step "Nothing to change: the target already runs and boots $SYSTEM_CLOSURE$( ((secrets_requested == 0)) || echo ' and holds these secrets'); checking its health all the same"
      check_unchanged
      step "Deployed: the host runs generation $generation ($SYSTEM_CLOSURE), boots it, and passed the health check (nothing was changed)"
      report_deployed
      exit 0
    fi
    closure_changed=0
    info "the target already runs and boots $SYSTEM_CLOSURE: only the secrets change (delivered, their units restarted, health-checked, committed)"
  fi
  return_to=$current
  info "the target runs ${current:-nothing yet}; its system profile (generation $generation) is ${profile_path:-none}"
  if [[ -n $current && -n $profile_path && $profile_path != "$current" ]]; then
    info "the profile is not the running system (an earlier deploy stopped there, or someone ran 'nixos-rebuild boot'): the deploy returns to the running one, $current, on failure"
  fi
}

build_on_target() {
  [[ -n $build_where ]] || return 0
  local status=0 what=$SYSTEM_CLOSURE
  if [[ $build_where == remote ]]; then
    step "Copying the derivation $drv_path to the target, to build it there"
    NIX_SSHOPTS="${ssh_opts[*]} -o ControlMaster=no" timeout 3600 nix "${nix_flags[@]}" copy --derivation \
      --to "ssh-ng://$(target_address)" --substitute-on-destination --no-check-sigs "$drv_path" ||
      abort "$EXIT_REFUSED" "copying the derivation $drv_path to the target failed; the target's system was not changed"
    what=$drv_path
  fi
  step "Realising $what on the target (at most ${build_timeout}s)"
  request "$((build_timeout + 60))" realise "$what" "$build_timeout" || status=$?
  ((status == 0)) ||
    abort "$EXIT_REFUSED" "the target could not build or substitute $what (status $status; its log is above); the target's system was not changed"
  [[ $'\n'$(reply_values out)$'\n' == *$'\n'"$SYSTEM_CLOSURE"$'\n'* ]] ||
    abort "$EXIT_REFUSED" "building $what on the target gave '$(reply_values out | paste -sd' ' -)'; expected $SYSTEM_CLOSURE"
  info "built on the target: $SYSTEM_CLOSURE"
}

missing=()  # check_space: the closure's paths the target lacks, in the order of
needed=0    # nix-store --query --requisites (dependencies first), and their NAR bytes
copy_inline="" # copy_closure: a nix-store --export stream of them, for the prepare batch

# load_closure_paths: closure_paths and in_closure := the closure's store
# paths (each checked to be one), once.
closure_paths=()
declare -A in_closure=()
load_closure_paths() {
  local path bad
  ((${#closure_paths[@]} == 0)) || return 0
  [[ -s $work_dir/closure.paths ]] || nix-store --query --requisites "$SYSTEM_CLOSURE" >"$work_dir/closure.paths"
  bad=$(all_lines_match "$store_path_re" "$work_dir/closure.paths") ||
    abort "$EXIT_REFUSED" "nix-store --query --requisites $SYSTEM_CLOSURE listed '$(shown "$bad")', which is not a store path; nothing was copied"
  mapfile -t closure_paths <"$work_dir/closure.paths"
  for path in "${closure_paths[@]}"; do
    in_closure[$path]=1
  done
}

check_space() {
  step "Checking free space on the target"
  local nix_free boot_free boot_needed=0 status=0 path size i
  if [[ -n $build_where ]]; then
    request 60 boot-needed "$SYSTEM_CLOSURE" || status=$?
    boot_needed=$(reply_value boot_needed)
    request 60 survey 0 || status=$?
  else
    load_closure_paths
    if [[ -n $early_survey_status ]]; then
      # Asked in the batch with "begin".
      status=$early_survey_status
      reply=("${early_survey[@]}")
    else
      request_payload=$(printf '%s\n' "${closure_paths[@]}")
      request 120 survey "$((${#request_payload} + 1))" || status=$?
    fi
    local -A lacks=()
    # The target may only name paths it was asked about.
    while IFS= read -r path; do
      [[ -n $path ]] || continue
      [[ -v in_closure[$path] ]] ||
        refuse_reply survey "it lists $path as missing, a path it was not asked about"
      lacks[$path]=1
    done < <(reply_values missing)
    measured_sizes
    boot_needed=$boot_bytes
    # In the closure's order (dependencies first), each once, and their bytes.
    missing=()
    needed=0
    for i in "${!closure_paths[@]}"; do
      path=${closure_paths[i]}
      [[ -v lacks[$path] ]] || continue
      missing+=("$path")
      size=${closure_sizes[i]}
      needed=$((needed + size))
    done
  fi
  ((status == 0)) || abort "$EXIT_REFUSED" "could not ask the target which store paths it lacks and how much space it has"
  nix_free=$(reply_value nix_free)
  boot_free=$(reply_value boot_free)
  [[ -n $nix_free ]] || refuse_reply survey "it gives no nix_free= (the free space of the target's /nix)"
  if [[ -z $build_where ]]; then
    info "/nix: ${#missing[@]} of ${#closure_paths[@]} paths missing, $needed bytes needed, $nix_free bytes available"
    ((needed <= nix_free)) ||
      abort "$EXIT_REFUSED" "not enough space in the target's /nix: needed $needed bytes ($((needed / 1048576)) MiB, ${#missing[@]} missing paths), available $nix_free bytes ($((nix_free / 1048576)) MiB); nothing was copied"
  fi
  if [[ -n $boot_free ]] && ((boot_needed > 0)); then
    info "/boot: $boot_needed bytes needed for kernel+initrd, $boot_free bytes available"
    ((boot_needed <= boot_free)) ||
      abort "$EXIT_REFUSED" "not enough space in the target's /boot for one more generation: needed $boot_needed bytes (kernel+initrd), available $boot_free bytes; nothing was copied"
  fi
}

copy_closure() {
  [[ -z $build_where ]] || return 0
  if ((${#missing[@]} == 0)); then
    info "nothing to copy: the target has every path of the closure"
    return 0
  fi
  if ((needed <= inline_copy_max)); then
    step "Copying the closure: the ${#missing[@]} missing paths ($needed bytes of NAR), exported here, imported by the target inside the session, before the arming"
    # In the order of closure.paths: every path after the paths it refers to.
    nix-store --export "${missing[@]}" >"$work_dir/export" ||
      abort "$EXIT_REFUSED" "nix-store --export of the missing paths failed; the target's system was not changed"
    copy_inline=$work_dir/export
    return 0
  fi
  step "Copying the closure (nix copy over the open connection)"
  local attempt=1 status=0
  keepalive_start
  progress_start "nix copy of $SYSTEM_CLOSURE"
  # NIX_SSHOPTS is split on whitespace: every value in ssh_opts is space-free.
  until NIX_SSHOPTS="${ssh_opts[*]} -o ControlMaster=no" nix "${nix_flags[@]}" copy \
    --to "ssh-ng://$(target_address)" --substitute-on-destination --no-check-sigs "$SYSTEM_CLOSURE"; do
    if ((attempt >= copy_attempts)); then
      status=1
      break
    fi
    info "nix copy attempt $attempt/$copy_attempts failed; retrying in 5s"
    sleep 5
    attempt=$((attempt + 1))
  done
  progress_stop
  keepalive_stop
  ((status == 0)) || abort "$EXIT_REFUSED" "nix copy failed $attempt times; the target's system was not changed"
}

# prepare_target: the target writes the deploy's state and arms its rollback
# timer (back to return_to after ROLLBACK_DEADLINE), then, if the profile is
# not the running system, makes the running system the boot default again.
# When the closure changes and no secrets do, the activation goes in the same
# batch ("if-ok activate": it runs only once the preparation succeeded); its
# reply waits in early_activate for activate().
early_activate_status="" early_activate=()
prepare_target() {
  local status=0 with_activation=0 prepare_reply=()
  target_changed=1 # from here on a refused reply leaves the target changed (the batch may have run on)
  if [[ -z $return_to ]]; then
    step "Nothing runs on the target yet: no system to return to, no rollback timer"
  else
    step "Arming the target's rollback to $return_to in ${ROLLBACK_DEADLINE}s"
  fi
  local batch_prefix=() import_status=0
  if [[ -n $copy_inline ]]; then
    send_file_request "$copy_inline" import "$(stat -c %s "$copy_inline")"
    batch_prefix=(if-ok)
  fi
  send_request "${batch_prefix[@]}" prepare "${return_to:--}" "$SYSTEM_CLOSURE" "$ROLLBACK_DEADLINE" "$activate_timeout"
  if ((closure_changed == 1 && secrets_differ == 0)); then
    with_activation=1
    send_request if-ok activate "$SYSTEM_CLOSURE" "$activate_timeout"
  fi
  if [[ -n $copy_inline ]]; then
    read_reply "$((activate_timeout * 2 + 60))" import || import_status=$?
    info "imported on the target: ${#missing[@]} paths ($needed bytes of NAR)$( ((import_status == 0)) || echo ": FAILED (status $import_status)")"
  fi
  read_reply "$((activate_timeout * 2 + 60))" prepare || status=$?
  prepare_reply=("${reply[@]}")
  if ((with_activation == 1)); then
    early_activate_status=0
    if ((status == 0)); then
      step "Activating $SYSTEM_CLOSURE (switch-to-configuration test: running, not yet the boot default)"
    fi
    read_reply "$((activate_timeout * 2 + 60))" activate || early_activate_status=$?
    early_activate=("${reply[@]}")
  fi
  reply=("${prepare_reply[@]}")
  # A batch that activates may have run in full before the connection dropped.
  if ((with_activation == 1)) && ((import_status == 255 || status == 255 || early_activate_status == 255)); then
    recover_after_loss "the arming and the activation"
  fi
  if ((import_status != 0)); then
    ((import_status != 255)) || abort "$EXIT_REFUSED" "lost the connection to the target while it imported the closure; nothing was activated"
    abort "$EXIT_REFUSED" "the target could not import the closure (status $import_status; see above); nothing was prepared or activated"
  fi
  case $status in
  0) ;;
  2 | 255) abort "$EXIT_REFUSED" "the target could not prepare the deploy (status $status; see above); nothing was activated" ;;
  *)
    abort "$EXIT_UNKNOWN" "the target could not make the running system $return_to its boot default again (status $status); the rollback timer returns to it by itself within ${ROLLBACK_DEADLINE}s; an operator must look"
    ;;
  esac
  [[ -z $(reply_value repaired) ]] ||
    info "the running system $return_to is the boot default again (generation $(reply_value repaired))"
}

# deliver_secrets: the complete new set, inside the shim's session (the values
# only in its data stream), swapped in on the target at once.
deliver_secrets() {
  ((secrets_differ == 1)) || return 0
  local status=0 units
  step "Delivering the secrets ($(secrets_summary)) to /var/lib/blog-secrets"
  untraced build_secrets_payload
  secrets_delivered=1 # from here on, the target may hold the new set
  request 120 secrets-deliver "$secrets_payload_bytes" "${return_to:--}" "$SYSTEM_CLOSURE" || status=$?
  ((status != 255)) || recover_after_loss "the delivery of the secrets"
  ((status == 0)) || roll_back "delivering the secrets failed (status $status; see above)"
  units=$(reply_values unit | paste -sd' ' -)
  info "the target holds them as $(reply_value set); the units that use them: ${units:-none}"
  test_hook deliver
}

# restart_secret_units: the units that use an added, changed or removed secret,
# if they run (or failed), so that they read the new set.
restart_secret_units() {
  ((secrets_delivered == 1)) || return 0
  local status=0 restarted left
  step "Restarting the units that use the added, changed or removed secrets (if active, activating or failed)"
  request "$((activate_timeout + 60))" secrets-restart "$activate_timeout" || status=$?
  ((status != 255)) || recover_after_loss "the restart of the secrets' units"
  restarted=$(reply_values restarted | paste -sd' ' -)
  left=$(reply_values left | paste -sd, -)
  info "restarted: ${restarted:-none}; left alone (not running): ${left:-none}"
  ((status == 0)) || roll_back "restarting the units that use the changed secrets failed (status $status; see above)"
}

# activate: switch-to-configuration test; its exit 4 fails the deploy only for
# units that had not failed before it began. Rolls back (exits) on failure.
activate() {
  local status=0 now=() what="switch-to-configuration test of $SYSTEM_CLOSURE"
  if [[ -n $early_activate_status ]]; then
    # Sent in the batch with "prepare".
    status=$early_activate_status
    reply=("${early_activate[@]}")
  else
    step "Activating $SYSTEM_CLOSURE (switch-to-configuration test: running, not yet the boot default)"
    request "$((activate_timeout * 2 + 60))" activate "$SYSTEM_CLOSURE" "$activate_timeout" || status=$?
  fi
  ((status != 255)) || recover_after_loss "the activation"
  ((status == 0)) || roll_back "activation failed ($what)"
  [[ $(reply_value switch_status) == 4 ]] || return 0
  # With exit 4 the reply lists the failed units (unit=).
  units_from_reply now
  split_failed "${now[@]}"
  ((${#new_failed[@]} == 0)) || roll_back "activation failed ($what): units failed: ${new_failed[*]}$(old_failed_note)"
  if ((${#old_failed[@]} > 0)); then
    info "$what exited 4: units failed before the deploy as well: ${old_failed[*]}; they do not block it"
  else
    info "$what exited 4, yet no unit is failed now (a job failed and left none failed); the health check decides"
  fi
}

# check_health: HEALTH_URL answers 2xx (with HEALTH_EXPECT) within
# HEALTH_TIMEOUT through every published address (or as resolved, or through
# HEALTH_RESOLVE), then no systemd unit failed. Sets health_failure.
health_failure=""
# open_health_tunnel: HEALTH_VIA=ssh: a local socket, $work_dir/health.sock,
# forwarded by the open SSH connection to 127.0.0.1:<HEALTH_URL's port> on the
# host: the site as the host itself serves it, when its firewall admits HTTP
# and HTTPS from the proxy's addresses only. Made anew for every check (a
# reconnect has a new connection).
open_health_tunnel() {
  rm -f "$work_dir/health.sock"
  ssh -F /dev/null -o ControlPath="$control_path" -O forward -L "$work_dir/health.sock:127.0.0.1:$health_url_port" "$(target_address)" 2>"$work_dir/forward.err" ||
    { info "ssh -O forward failed: $(tail -n 1 "$work_dir/forward.err")"; return 1; }
}

# check_health [--units-at-commit]: with the option, the failed units are
# left to the commit, which lists them and commits only if none failed since
# the deploy began (one round trip for both). Between attempts it waits 0.1 s,
# then twice as long each time, up to 1 s.
check_health() {
  local units_at_commit=0 pause=0.1
  [[ ${1:-} != --units-at-commit ]] || units_at_commit=1
  local deadline=$((SECONDS + HEALTH_TIMEOUT)) remaining i status now=()
  local targets=() errors=() pending=() still=() failures=() pinned="" placeholder=()
  [[ -z $HEALTH_PINNED_KEY ]] || pinned=" (certificate accepted by its pinned public key only)"
  if [[ $HEALTH_ACME == placeholder ]]; then
    acme_state
    if [[ $acme_now == pending ]]; then
      placeholder=(--cacert "$work_dir/acme-placeholder-ca.pem")
      pinned=" (certificate: the host has never had its ACME certificate for $health_url_host, as its records do not point at it yet; its self-signed placeholder is accepted, checked against the host's own minica CA)"
    fi
  fi
  if [[ $HEALTH_VIA == ssh ]]; then
    open_health_tunnel || {
      health_failure="health check: could not forward a socket to the host's port $health_url_port over the SSH connection"
      return 1
    }
    targets=("")
    step "Checking health: $HEALTH_URL$pinned through the SSH connection, at the host's own port $health_url_port (up to ${HEALTH_TIMEOUT}s), then failed units"
  elif ((${#addresses[@]} > 0)); then
    for i in "${!addresses[@]}"; do
      if [[ ${addresses[i]} == *:* ]]; then
        targets+=("$health_url_host:$health_url_port:[${addresses[i]}]")
      else
        targets+=("$health_url_host:$health_url_port:${addresses[i]}")
      fi
    done
    step "Checking health: $HEALTH_URL$pinned through ${addresses[*]} (up to ${HEALTH_TIMEOUT}s), then failed units"
  else
    targets=("$HEALTH_RESOLVE")
    step "Checking health: $HEALTH_URL$pinned (up to ${HEALTH_TIMEOUT}s), then failed units"
  fi
  pending=("${!targets[@]}")
  while :; do
    remaining=$((deadline - SECONDS))
    ((remaining >= 1)) || remaining=1
    still=()
    for i in "${pending[@]}"; do
      local args=(--silent --show-error --fail --location --output "$work_dir/health.body" --max-time "$((remaining < 10 ? remaining : 10))")
      [[ -z ${targets[i]} ]] || args+=(--resolve "${targets[i]}")
      [[ $HEALTH_VIA == direct ]] || args+=(--unix-socket "$work_dir/health.sock")
      # A pinned key replaces the CA check (an origin certificate no public CA
      # signed); curl still refuses any other key, --insecure or not.
      [[ -z $HEALTH_PINNED_KEY ]] || args+=(--insecure --pinnedpubkey "$HEALTH_PINNED_KEY")
      args+=("${placeholder[@]}")
      if curl "${args[@]}" "$HEALTH_URL" 2>"$work_dir/health.err"; then
        if [[ -z $HEALTH_EXPECT ]] || grep -qF -- "$HEALTH_EXPECT" "$work_dir/health.body"; then
          continue
        fi
        errors[i]="the page does not contain HEALTH_EXPECT '$HEALTH_EXPECT'"
      else
        errors[i]=$(tail -n 1 "$work_dir/health.err")
      fi
      still+=("$i")
    done
    pending=("${still[@]}")
    ((${#pending[@]} > 0)) || break
    if ((SECONDS >= deadline)); then
      if ((${#addresses[@]} == 0)); then
        health_failure="health check: $HEALTH_URL did not pass within ${HEALTH_TIMEOUT}s (${errors[0]})"
      else
        for i in "${pending[@]}"; do
          failures+=("through ${addresses[i]} ($(family "${addresses[i]}")): ${errors[i]}")
        done
        health_failure="health check: $HEALTH_URL did not pass within ${HEALTH_TIMEOUT}s $(
          IFS=';'
          echo "${failures[*]}"
        )"
      fi
      return 1
    fi
    sleep "$pause"
    case $pause in
    0.1) pause=0.2 ;;
    0.2) pause=0.4 ;;
    0.4) pause=0.8 ;;
    *) pause=1 ;;
    esac
  done
  if ((units_at_commit == 1)); then
    info "the site answers; the commit checks the failed units"
    return 0
  fi
  status=0
  failed_units now || status=$?
  if ((status == 255)); then
    health_failure="lost the connection to the target while listing its failed units"
    return 255
  fi
  if ((status != 0)); then
    health_failure="health check: could not list failed units on the target"
    return 1
  fi
  split_failed "${now[@]}"
  if ((${#new_failed[@]} > 0)); then
    health_failure="health check: failed systemd units: ${new_failed[*]}$(old_failed_note)"
    return 1
  fi
  info "healthy$( ((${#old_failed[@]} == 0)) || echo "; units failed before the deploy as well, not counted: ${old_failed[*]}")"
}

# --- The ACME certificate (HEALTH_ACME) -------------------------------------
# nixpkgs nixos/modules/security/acme/default.nix (the module with
# acme-order-renew-<cert>.service, read through the search tool): until the
# first order succeeds, acme-<cert>.service writes a self-signed certificate
# from minica into /var/lib/acme/<cert>/ (chain.pem is minica's own CA
# certificate, made once per host in /var/lib/acme/.minica) and nginx serves
# it; the first success leaves /var/lib/acme/<cert>/acme-success, and the
# placeholder is never made again. With HTTP-01, a host gets its certificate
# only once the records point at it, so a new host is checked before the
# records move with its placeholder (HEALTH_ACME=placeholder), and again in
# full after they moved (HEALTH_ACME=issued).
acme_now=""
readonly acme_reorder_every=240 # seconds; Let's Encrypt allows 5 failed validations per hour and name

# acme_state: acme_now := none (no ACME certificate of that name on the target),
# issued (it has had its certificate at least once), pending (it serves the
# placeholder; its minica CA is then in $work_dir/acme-placeholder-ca.pem), or
# unknown (no usable answer).
acme_state() {
  local status=0 chain
  acme_now=unknown
  request 30 acme-state "$health_url_host" || status=$?
  ((status == 0)) || return 0
  case $(reply_value acme) in
  none | issued) acme_now=$(reply_value acme) ;;
  pending)
    chain=$(reply_value chain)
    # The target's reply is data: base64 of one PEM certificate, bounded.
    if ((${#chain} <= 65536)) && [[ $chain =~ ^[A-Za-z0-9+/]+={0,2}$ ]] &&
      base64 -d <<<"$chain" >"$work_dir/acme-placeholder-ca.pem" 2>/dev/null &&
      [[ $(head -n 1 "$work_dir/acme-placeholder-ca.pem") == "-----BEGIN CERTIFICATE-----" ]]; then
      acme_now=pending
    else
      info "the target's placeholder CA certificate for $health_url_host is missing or not a PEM certificate; checking with the usual CAs"
    fi
    ;;
  esac
}

# await_acme_certificate: HEALTH_ACME=issued, a target that has never had its
# certificate: starts its order now (the records point at it by now), again
# every acme_reorder_every seconds, and waits for it, up to ACME_TIMEOUT.
await_acme_certificate() {
  [[ $HEALTH_ACME == issued ]] || return 0
  acme_state
  [[ $acme_now == pending ]] || return 0
  local deadline=$((SECONDS + ACME_TIMEOUT)) next_order=0
  step "The target has never had its ACME certificate for $health_url_host (it serves the self-signed placeholder); ordering it now that the records point at it, waiting up to ${ACME_TIMEOUT}s"
  while :; do
    if ((SECONDS >= next_order)); then
      request 30 acme-order "$health_url_host" || true
      if [[ $(reply_value ordered) == 1 ]]; then
        info "started acme-order-renew-$health_url_host.service on the target"
      else
        info "the target did not confirm the start of acme-order-renew-$health_url_host.service; waiting"
      fi
      next_order=$((SECONDS + acme_reorder_every))
    fi
    sleep 5
    acme_state
    if [[ $acme_now == issued ]]; then
      info "the certificate for $health_url_host is issued"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      health_failure="its ACME certificate for $health_url_host was not issued within ${ACME_TIMEOUT}s (ACME_TIMEOUT); the site serves the self-signed placeholder. The host orders again every 15 minutes (acme-order-renew-$health_url_host.service; its journal says why an order failed)"
      return 1
    fi
  done
}

# report_health_after PREFIX: health of the system that runs again (and, if
# secrets were delivered, that the set from before is back); exits 3 or 4.
report_health_after() {
  local prefix=$1 generation_now=$2 running=$3 secrets_note=""
  if ((secrets_delivered == 1)); then
    untraced check_secrets_state
    [[ $secrets_now == old ]] ||
      abort "$EXIT_UNKNOWN" "$prefix; rolled back to generation $generation_now ($running), but its secrets are not the set it had before the deploy (they are: $secrets_now); an operator must look"
    secrets_note="; its secrets are the set from before the deploy again"
  fi
  if ! check_health; then
    abort "$EXIT_UNKNOWN" "$prefix; rolled back to generation $generation_now ($running), but it is not healthy either: $health_failure"
  fi
  abort "$EXIT_ROLLED_BACK" "$prefix; rolled back: the host runs generation $generation_now ($running) again, boots it, and passed the health check$secrets_note"
}

# roll_back REASON: after a failure once the target was changed. Exits 3 or 4.
roll_back() {
  local reason=$1 status=0 running
  printf 'error: %s\n' "$reason" >&2
  if [[ -z $return_to ]]; then
    abort "$EXIT_UNKNOWN" "no previous system to roll back to; the target runs $SYSTEM_CLOSURE, unverified, and does not boot it; an operator must look"
  fi
  step "Rolling back to $return_to"
  request "$((activate_timeout * 2 + 60))" rollback "$activate_timeout" || status=$?
  ((status != 255)) || recover_after_loss "the rollback after: $reason"
  running=$(reply_value current)
  if ((status != 0)) || [[ $running != "$return_to" ]]; then
    abort "$EXIT_UNKNOWN" "rollback to $return_to failed after: $reason; the target runs ${running:-an unknown system} (status $status); an operator must look"
  fi
  info "the target runs $running again"
  report_health_after "deploy failed: $reason" "$(reply_value generation)" "$running"
}

# recover_after_loss STEP: the connection dropped during STEP, once the
# target was changed. Reconnects (within CONNECT_ATTEMPTS/CONNECT_TIMEOUT),
# takes the lock again, which returns an unconfirmed system to return_to,
# and reports what runs. Exits 0, 3 or 4.
recover_after_loss() {
  local reason="the connection to the target dropped during $1"
  ((recovering == 0)) || abort "$EXIT_UNKNOWN" "$reason, again, while recovering; state unknown; the target's rollback timer returns it to $return_to; an operator must look"
  recovering=1
  printf 'error: %s\n' "$reason" >&2
  step "Reconnecting to see what the target runs (it may have rebooted)"
  close_shim
  close_master
  ssh_wait_exit=$EXIT_UNKNOWN
  open_connection
  start_shim
  begin_deploy
  local how=""
  [[ -z $(reply_value recovered) ]] || how="its unconfirmed deploy was just returned"
  secrets_now=""
  if ((secrets_delivered == 1)); then
    untraced check_secrets_state
    [[ $secrets_now != unknown ]] || abort "$EXIT_UNKNOWN" "$reason; could not read the target's secrets after reconnecting; an operator must look"
  fi
  if [[ $current == "$SYSTEM_CLOSURE" && $profile_path == "$SYSTEM_CLOSURE" && $secrets_now =~ ^(new)?$ ]]; then
    step "Deployed: the commit had completed before the connection dropped; the host runs generation $generation ($SYSTEM_CLOSURE) and boots it"
    report_deployed
    exit 0
  fi
  if [[ -n $return_to && $current == "$return_to" && $secrets_now =~ ^(old)?$ ]]; then
    info "the target runs $current again (${how:-it rebooted into its boot default, or its rollback timer fired})"
    report_health_after "deploy failed: $reason" "$generation" "$current"
  fi
  abort "$EXIT_UNKNOWN" "$reason; the target now runs ${current:-nothing} (profile ${profile_path:-none}${secrets_now:+, secrets: $secrets_now}), not $return_to; an operator must look"
}

# deployer: who runs this deploy, for the host's record of the last one
# (/var/lib/blog-deploy/last, read by scripts/status.sh): $GITHUB_ACTOR in a
# workflow, else $USER, else the login; every character outside deployer_re's
# as '_', at most 64.
deployer() {
  local LC_ALL=C who=${GITHUB_ACTOR:-${USER:-$(id -un 2>/dev/null || true)}}
  who=${who//[^ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@+-]/_}
  who=${who:0:64}
  printf '%s\n' "${who:-unknown}"
}

# commit: one batch: the target lists its failed units and commits only if
# none failed since the deploy began (it is sent the units that failed
# before), then, if the commit succeeded, the lock is released ("if-ok end").
commit() {
  local status=0 end_status=0 commit_reply=() now=()
  step "Committing: $SYSTEM_CLOSURE becomes the system profile and the boot default, if no unit failed since the deploy began; the rollback timer is cancelled"
  request_payload=""
  ((${#failed_before[@]} == 0)) || request_payload=$(printf '%s\n' "${failed_before[@]}")
  send_request commit "$( ((${#failed_before[@]} == 0)) && echo 0 || echo $((${#request_payload} + 1)))" "$activate_timeout" "$(deployer)"
  send_request if-ok end
  read_reply "$((activate_timeout * 2 + 60))" commit || status=$?
  commit_reply=("${reply[@]}")
  read_reply 30 end || end_status=$?
  ((end_status != 0)) || shim_ended=1
  reply=("${commit_reply[@]}")
  if ((status == 0 || status == 70)); then
    units_from_reply now
    split_failed "${now[@]}"
  fi
  case $status in
  0)
    ((${#new_failed[@]} == 0)) ||
      abort "$EXIT_UNKNOWN" "the commit reported success, yet the target lists units failed since the deploy began: ${new_failed[*]}; an operator must look"
    ((${#old_failed[@]} == 0)) || info "units failed before the deploy as well, not counted: ${old_failed[*]}"
    ;;
  70)
    ((${#new_failed[@]} > 0)) ||
      abort "$EXIT_UNKNOWN" "the target refused the commit for failed units, yet lists none that failed since the deploy began; an operator must look"
    roll_back "health check: failed systemd units: ${new_failed[*]}$(old_failed_note)"
    ;;
  255) recover_after_loss "the commit" ;;
  76)
    printf 'error: %s\n' "the rollback timer fired before the deploy could commit (ROLLBACK_DEADLINE=${ROLLBACK_DEADLINE}s too short?)" >&2
    [[ $(reply_value current) == "$return_to" ]] ||
      abort "$EXIT_UNKNOWN" "the rollback timer fired, but the target runs $(reply_value current), not $return_to; an operator must look"
    report_health_after "deploy failed: the rollback timer had fired (ROLLBACK_DEADLINE=${ROLLBACK_DEADLINE}s too short?)" "$(reply_value generation)" "$(reply_value current)"
    ;;
  77)
    report_health_after "deploy failed: making $SYSTEM_CLOSURE the boot default failed (its log is above); the target returned to $return_to" \
      "$(reply_value generation)" "$(reply_value current)"
    ;;
  *) abort "$EXIT_UNKNOWN" "the commit failed and so did the return to $return_to (status $status); the target runs $(reply_value current); an operator must look" ;;
  esac
  [[ $(reply_value current) == "$SYSTEM_CLOSURE" && $(reply_value profile) == "$SYSTEM_CLOSURE" ]] ||
    abort "$EXIT_UNKNOWN" "the commit reported success, but the target runs $(reply_value current) with profile $(reply_value profile); an operator must look"
  generation=$(reply_value generation)
}

main() {
  parse_args "${BASH_SOURCE[0]}" "$@"
  parse_inputs
  hide_addresses
  install_exit_traps cleanup
  prepare_work_dir
  realise_closure
  measure_closure
  open_connection
  start_shim
  begin_deploy
  read_secrets
  read_target_state
  record_failed_units
  if ((closure_changed == 1)); then
    build_on_target
    check_space
    copy_closure
  fi
  prepare_target
  deliver_secrets
  local status=0
  if ((closure_changed == 1)); then
    activate
  fi
  restart_secret_units
  test_hook activate
  status=0
  check_health --units-at-commit || status=$?
  ((status != 255)) || recover_after_loss "the health check"
  ((status == 0)) || roll_back "$health_failure"
  commit
  step "Deployed: the host runs generation $generation ($SYSTEM_CLOSURE) and boots it$( ((secrets_delivered == 0)) || echo "; secrets: $(secrets_summary)")"
  report_deployed
}

main "$@"
