# shellcheck shell=bash
# Helpers shared by install.sh and deploy.sh: messages, input checks, secret
# files, the pinned known_hosts file and the bounded SSH wait.
# Sourced, never executed; callers set `set -euo pipefail` themselves.

# shellcheck source=scripts/lib/patterns.sh
source "$(dirname "${BASH_SOURCE[0]}")/patterns.sh"

# Exit codes (both scripts; see the interface table in docs/how-it-works.md).
readonly EXIT_BAD_INPUT=1 # bad input: names the variable, value and expectation
readonly EXIT_REFUSED=2   # refused before changing the target
# shellcheck disable=SC2034 # used by the scripts that source this file
readonly EXIT_ROLLED_BACK=3 # failed and rolled back: the system that ran before runs and boots again, health re-checked
# shellcheck disable=SC2034
readonly EXIT_UNKNOWN=4 # rollback failed or state unknown: an operator must look

# The name the pinned key is filed under in the temporary known_hosts file
# (used with -o HostKeyAlias, so the target's address or port does not matter).
readonly HOST_ALIAS=blog-target

step() {
  printf '==> %s\n' "$*" >&2
}

info() {
  printf '    %s\n' "$*" >&2
}

warn() {
  printf 'warning: %s\n' "$*" >&2
}

# abort <exit code> <message...>
abort() {
  local code=$1
  shift
  progress_stop
  printf 'error: %s\n' "$*" >&2
  exit "$code"
}

# progress_start LABEL [FILE]: until progress_stop, a line on stderr at least
# every 10 seconds while long work runs (a copy, a backup, a restore, an
# install): "LABEL: still running, 1m20s elapsed[, 42 MiB so far]" (the size of
# FILE, when given). pulumi-command streams it into `pulumi up` as it comes.
# The ticker is a child that stops with progress_stop (abort calls it), or by
# itself once this shell is gone. BLOG_PROGRESS_INTERVAL (seconds, 1 to 10)
# lets the tests see it sooner.
progress_pid=""
progress_start() {
  local label=$1 file=${2:-} interval=${BLOG_PROGRESS_INTERVAL:-10} parent=$BASHPID started
  [[ $interval =~ ^([1-9]|10)$ ]] || interval=10
  progress_stop
  started=$(date +%s)
  (
    local now elapsed size
    while sleep "$interval"; do
      kill -0 "$parent" 2>/dev/null || exit 0
      now=$(date +%s)
      elapsed=$((now - started))
      size=""
      if [[ -n $file && -f $file ]]; then
        size=", $(($(stat -c %s -- "$file") / 1048576)) MiB so far"
      fi
      printf '%s: still running, %dm%02ds elapsed%s\n' "$label" $((elapsed / 60)) $((elapsed % 60)) "$size" >&2
    done
  ) &
  progress_pid=$!
}

# progress_stop: ends the ticker progress_start started, if any.
progress_stop() {
  [[ -n ${progress_pid:-} ]] || return 0
  kill "$progress_pid" 2>/dev/null || true
  wait "$progress_pid" 2>/dev/null || true
  progress_pid=""
}

# shown VALUE: VALUE as a message may show it: every byte but printable ASCII
# (a control character, an escape sequence, a newline) as '?', at most 200
# characters. For what the far side sent and for input that was refused.
shown() {
  local LC_ALL=C value=$1
  value=${value//[^[:print:]]/?}
  ((${#value} <= 200)) || value="${value:0:200}..."
  printf '%s' "$value"
}

# printable VALUE: VALUE is printable ASCII only (no control character, no
# newline, nothing a terminal or a CI log would interpret).
printable() {
  local LC_ALL=C
  [[ $1 =~ ^[[:print:]]*$ ]]
}

# value_form_ok KIND VALUE: VALUE, sent by the far side (the target shim's
# replies, the host's status answer), has the form KIND names. "text" is the
# caller's to bound; every other kind is checked here, once for all callers.
value_form_ok() {
  local value=$2
  case $1 in
  uint) [[ $value =~ $uint_re ]] ;;
  uint_or_empty) [[ -z $value || $value =~ $uint_re ]] ;;
  store_path) [[ $value =~ $store_path_re ]] ;;
  store_path_or_empty) [[ -z $value || $value =~ $store_path_re ]] ;;
  store_path_or_dash) [[ $value == - || $value =~ $store_path_re ]] ;;
  # systemd's own root mount and slice are the only unit names that start with '-'.
  unit) [[ $value =~ $unit_name_re || $value == -.mount || $value == -.slice ]] ;;
  unit_state) [[ $value == *' '* && ${value% *} =~ $unit_name_re && ${value##* } =~ ^[abcdefghijklmnopqrstuvwxyz-]{1,32}$ ]] ;;
  secret_hash) [[ $value == *' '* && ${value%% *} =~ $secret_name_re && ${value#* } =~ ^[0123456789abcdef]{64}$ ]] ;;
  set_name) [[ $value =~ ^set-[ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-]{1,100}$ ]] ;;
  outcome) [[ $value == kept || $value == restored ]] ;;
  decision) [[ -z $value || $value == commit || $value == rollback ]] ;;
  acme_state) [[ $value == none || $value == pending || $value == issued ]] ;;
  deployer) [[ $value =~ $deployer_re ]] ;;
  disk) [[ $value =~ ^/[ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-]{0,200}\ (0|[123456789][0123456789]?|100)$ ]] ;;
  base64) [[ $value =~ ^[ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/]+={0,2}$ ]] ;;
  bit) [[ $value == 0 || $value == 1 ]] ;;
  *) return 1 ;;
  esac
}

# sanitize_stream: copies lines from stdin to stdout as text a log can show:
# every byte but printable ASCII and tab as '?', and a line that would read as
# a CI runner's command ("::...", GitHub's workflow commands) behind a '|'. For what the far side prints to
# our stderr (the target shim's messages).
sanitize_stream() {
  local LC_ALL=C line
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line//[^[:print:]$'\t']/?}
    [[ ! $line =~ ^[[:space:]]*:: ]] || line="|$line"
    printf '%s\n' "$line"
  done
}

# has_value NAME: the variable is non-empty. Tests the length only, so the
# value of a secret never shows up in a trace (bash -x).
has_value() {
  [[ -v $1 ]] || return 1 # unset (set -u would abort on the length)
  local -n value_ref=$1
  ((${#value_ref} > 0))
}

# untraced COMMAND...: runs COMMAND with tracing (bash -x) off, then turns it
# back on if it was: every line that touches a secret's value runs inside one.
# COMMAND's status is ours; outside a condition, set -e ends the script on a
# failure as usual (tracing stays off then).
untraced() {
  local xtrace=$- status
  { set +x; } 2>/dev/null
  "$@"
  status=$?
  [[ $xtrace != *x* ]] || set -x
  return "$status"
}

# parse_args SCRIPT ARGS...: the scripts take their input from the
# environment only; --help prints the script's usage (print_help).
parse_args() {
  local script=$1
  shift
  case ${1:-} in
  "") ;;
  -h | --help)
    print_help "$script"
    exit 0
    ;;
  *) abort "$EXIT_BAD_INPUT" "unexpected argument '$1'; input comes from environment variables (see --help)" ;;
  esac
}

# print_help SCRIPT: scripts/help/<name>.txt, the usage a person reads (usage
# line, what is required, the defaults, an example; no test hooks: those are
# in docs/development.md); the script's header comment when there is none.
print_help() {
  local script=$1 help
  help="$(dirname "$script")/help/$(basename "$script" .sh).txt"
  if [[ -f $help ]]; then
    cat "$help"
  else
    sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$script"
  fi
}

# Bad input is reported at once: between begin_input_checks and
# end_input_checks, bad_input MESSAGE records a problem and the checks go on;
# end_input_checks prints every problem in one message and exits
# EXIT_BAD_INPUT. Outside them, bad_input aborts at once. A second
# begin_input_checks before the end keeps what the first collected.
input_problems=()
collecting_input=0
begin_input_checks() {
  collecting_input=1
}
bad_input() {
  if ((collecting_input == 1)); then
    input_problems+=("$1")
    return 0
  fi
  abort "$EXIT_BAD_INPUT" "$1"
}
end_input_checks() {
  local message problem
  collecting_input=0
  case ${#input_problems[@]} in
  0) return 0 ;;
  1) abort "$EXIT_BAD_INPUT" "${input_problems[0]}" ;;
  esac
  message="${#input_problems[@]} problems with the input (see --help):"
  for problem in "${input_problems[@]}"; do
    message+=$'\n'"  - $problem"
  done
  abort "$EXIT_BAD_INPUT" "$message"
}

# install_exit_traps FUNCTION: FUNCTION runs on every exit; an interrupt or
# a TERM exits with the usual status, so FUNCTION runs then too.
install_exit_traps() {
  # shellcheck disable=SC2064 # the function name is meant to be expanded now
  trap "$1" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# require_set NAME: the variable must be non-empty.
require_set() {
  has_value "$1" || bad_input "$1 is not set; it is required"
}

# require_uint NAME MIN: the variable must be an integer >= MIN.
require_uint() {
  local name=$1 min=$2 value=${!1:-}
  if [[ ! $value =~ ^[0-9]+$ ]] || ((value < min)); then
    bad_input "$name='$(shown "$value")' is not valid; expected an integer >= $min"
  fi
}

# The host key types the scripts pin, the same list as the stack config's
# (src/keys.ts): the install's own key is always ed25519.
readonly host_key_types=(ssh-ed25519 ecdsa-sha2-nistp256 ecdsa-sha2-nistp384 ecdsa-sha2-nistp521 ssh-rsa)

# require_host_key NAME: the variable holds exactly one OpenSSH public key
# line of a type in host_key_types, "<type> <base64> [comment]": one line (a
# second line would become a second known_hosts entry), printable, and a key
# that ssh-keygen reads as that type.
require_host_key() {
  local name=$1 value=${!1:-} type read_type
  local line_re='^([abcdefghijklmnopqrstuvwxyz0123456789-]+) [ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/]+={0,2}( [[:print:]]*)?$'
  local expected="expected one public key line '<type> <base64> [comment]' of type ${host_key_types[*]}"
  if ! printable "$value" || [[ ! $value =~ $line_re ]]; then
    bad_input "$name='$(shown "$value")' is not valid; $expected"
    return 0
  fi
  type=${BASH_REMATCH[1]}
  if [[ " ${host_key_types[*]} " != *" $type "* ]]; then
    bad_input "$name='$(shown "$value")' is not valid: $type is not a host key type the deploy pins; $expected"
    return 0
  fi
  # ssh-keygen prints "<bits> <fingerprint> <comment> (<TYPE>)" for a key it can read.
  read_type=$(ssh-keygen -lf - <<<"$value" 2>/dev/null | awk 'NR == 1 {print $NF}') || read_type=""
  case $type:$read_type in
  ssh-ed25519:'(ED25519)' | ecdsa-sha2-*:'(ECDSA)' | ssh-rsa:'(RSA)') ;;
  *) bad_input "$name='$(shown "$value")' is not valid: its base64 part is not a $type key; $expected" ;;
  esac
}

# parse_published_addresses: PUBLISHED_ADDRESSES (IPv4 and IPv6 addresses,
# separated by spaces or commas, IPv6 with or without brackets) into the
# array published_addresses.
published_addresses=()
parse_published_addresses() {
  local list=${PUBLISHED_ADDRESSES:-} address
  published_addresses=()
  for address in ${list//,/ }; do
    address=${address#[}
    address=${address%]}
    if [[ ! $address =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ && ! ($address =~ ^[0-9A-Fa-f:.]+$ && $address == *:*) ]]; then
      bad_input "PUBLISHED_ADDRESSES='$(shown "$list")' is not valid: '$(shown "$address")' is not an IPv4 or IPv6 address"
      continue
    fi
    published_addresses+=("$address")
  done
}

# hide_addresses: with HIDE_ADDRESSES=1 (the stack sets it behind Cloudflare's
# proxy, whose point is to hide the origin's address), everything this script
# and the commands it runs print, stdout and stderr, goes through a filter
# that shows TARGET_HOST and each of PUBLISHED_ADDRESSES as a placeholder:
# [origin IPv4], [origin IPv6] or [origin host]. The output of pulumi up (and
# so a CI log) then does not name the origin. Call after the input is parsed.
hide_addresses() {
  local address hidden=()
  case ${HIDE_ADDRESSES:-0} in
  0) return 0 ;;
  1) ;;
  *) abort "$EXIT_BAD_INPUT" "HIDE_ADDRESSES='$(shown "$HIDE_ADDRESSES")' is not valid; expected 1 (show the origin's addresses as placeholders) or 0" ;;
  esac
  for address in "${TARGET_HOST:-}" "${published_addresses[@]}"; do
    address=${address#[}
    address=${address%]}
    [[ -n $address ]] && hidden+=("$address")
  done
  ((${#hidden[@]} > 0)) || return 0
  exec > >(mask_stream "${hidden[@]}") 2> >(mask_stream "${hidden[@]}" >&2)
}

# mask_stream ADDRESS...: copies stdin to stdout line by line, each ADDRESS
# (as plain text, the longest first) replaced by its placeholder.
mask_stream() {
  local line i addresses=() labels=()
  mapfile -t addresses < <(printf '%s\n' "$@" | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
  for i in "${!addresses[@]}"; do
    if [[ ${addresses[i]} == *:* ]]; then
      labels[i]="[origin IPv6]"
    elif [[ ${addresses[i]} =~ ^[0123456789.]+$ ]]; then
      labels[i]="[origin IPv4]"
    else
      labels[i]="[origin host]"
    fi
  done
  while IFS= read -r line || [[ -n $line ]]; do
    for i in "${!addresses[@]}"; do
      line=${line//"${addresses[i]}"/${labels[i]}}
    done
    printf '%s\n' "$line"
  done
}

# family ADDRESS: how the operator knows it.
family() {
  if [[ $1 == *:* ]]; then echo "IPv6, the AAAA record"; else echo "IPv4, the A record"; fi
}

# Keys and secrets the scripts must write to files (ssh -i, nixos-anywhere's
# --extra-files, known_hosts) live in a private directory on a tmpfs, never on
# a disk: a deployer killed with SIGKILL (how pulumi-command cancels) runs no
# exit trap, so its directory stays until the next run of any of the scripts
# removes it, which it does for every such directory whose process is gone.
# The name records the process: blog-deploy.<pid>-<start time>.<random>.

# runtime_base: the first of $XDG_RUNTIME_DIR, /run/user/<uid> and /dev/shm
# that is a tmpfs directory we may write to (the first two: ours alone);
# otherwise ${TMPDIR:-/tmp}, with a warning.
runtime_base() {
  local dir uid fs
  uid=$(id -u)
  for dir in "${XDG_RUNTIME_DIR:-}" "/run/user/$uid" /dev/shm; do
    [[ -n $dir && -d $dir && -w $dir && ! -L $dir ]] || continue
    [[ $dir == /dev/shm || -O $dir ]] || continue
    fs=$(stat -f -c %T "$dir" 2>/dev/null) || continue
    if [[ $fs == tmpfs || $fs == ramfs ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  warn "no tmpfs for the deploy's keys (\$XDG_RUNTIME_DIR, /run/user/$uid, /dev/shm): they go to ${TMPDIR:-/tmp}, where a killed run leaves them until the next run removes them"
  printf '%s\n' "${TMPDIR:-/tmp}"
}

# process_start PID: the process's start time (clock ticks since boot, field 22
# of /proc/PID/stat), or "-" where there is no /proc.
process_start() {
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || {
    echo -
    return 0
  }
  read -r -a fields <<<"${stat##*) }"
  echo "${fields[19]:--}"
}

# sweep_work_dirs BASE: removes every blog-deploy.<pid>-<start>.* directory in
# BASE that is ours and whose process is gone (no process with that pid and
# start time). An SSH control master left in it is told to exit first.
sweep_work_dirs() {
  local base=$1 dir name pid start
  for dir in "$base"/blog-deploy.*-*.*; do
    [[ -d $dir && ! -L $dir && -O $dir ]] || continue
    name=${dir##*/blog-deploy.}
    pid=${name%%-*}
    start=${name#*-}
    start=${start%%.*}
    [[ $pid =~ ^[0123456789]+$ ]] || continue
    if [[ $start == - ]]; then
      ! kill -0 "$pid" 2>/dev/null || continue
    elif [[ -e /proc/$pid && $(process_start "$pid") == "$start" ]]; then
      continue
    fi
    if [[ -S $dir/ssh.sock ]]; then
      timeout 10 ssh -F /dev/null -o ControlPath="$dir/ssh.sock" -O exit blog-target >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
  done
}

# make_work_dir: a private (0700), space-free temporary directory in
# $work_dir, on a tmpfs (runtime_base), after the directories of runs that
# were killed are removed. Short and space-free on purpose: it holds the SSH
# control socket (path length limit) and files named in NIX_SSHOPTS (split on
# whitespace).
make_work_dir() {
  local base
  base=$(runtime_base)
  sweep_work_dirs "$base"
  work_dir=$(umask 077 && mktemp -d "$base/blog-deploy.$$-$(process_start $$).XXXXXX")
  chmod 700 "$work_dir"
}

# write_secret_file PATH VARNAME: the variable's value into PATH, mode 0600,
# with tracing off so the value never reaches a log.
write_secret_file() {
  local path=$1 name=$2
  (
    set +x
    umask 077
    printf '%s\n' "${!name}" >"$path"
  )
}

# identity_options ARRAY NAME PATH: when the variable NAME holds a private
# key, writes it to PATH (mode 0600, untraced) and sets ARRAY to the ssh
# options that log in with it alone; otherwise ARRAY is empty (ssh-agent).
identity_options() {
  local -n identity_ref=$1
  identity_ref=()
  has_value "$2" || return 0
  write_secret_file "$3" "$2"
  # shellcheck disable=SC2034 # a nameref: this sets the caller's array
  identity_ref=(-o IdentitiesOnly=yes -i "$3")
}

# write_known_hosts PATH KEYLINE: the one-line known_hosts file for HOST_ALIAS.
write_known_hosts() {
  printf '%s %s\n' "$HOST_ALIAS" "$2" >"$1"
}

# deploy_ssh_options ARRAY: the ssh options every connection of the scripts
# starts with, whatever the operator's ssh_config says: no configuration file
# at all (-F /dev/null: no ForwardAgent, LocalCommand, KnownHostsCommand,
# ProxyCommand, SendEnv or IdentityFile from ~/.ssh/config or
# /etc/ssh/ssh_config), and the risky settings off explicitly, for the cases
# where a command line comes after ours (ssh takes an option's first value).
# A jump host only through SSH_PROXY_JUMP ([user@]host[:port], several joined
# by commas), which the operator sets on purpose.
deploy_ssh_options() {
  local -n deploy_ref=$1
  deploy_ref=(
    -F /dev/null
    -o ForwardAgent=no
    -o ForwardX11=no
    -o ForwardX11Trusted=no
    -o UpdateHostKeys=no
    -o CheckHostIP=no
    -o VerifyHostKeyDNS=no
  )
  if [[ -n ${SSH_PROXY_JUMP:-} ]]; then
    # shellcheck disable=SC2034 # a nameref: this sets the caller's array
    deploy_ref+=(-o ProxyJump="$SSH_PROXY_JUMP")
  else
    deploy_ref+=(-o ProxyCommand=none)
  fi
}

# check_proxy_jump: SSH_PROXY_JUMP, if set, is [user@]host[:port] hops joined
# by commas (it goes into NIX_SSHOPTS, split on whitespace).
check_proxy_jump() {
  local hop='([ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-]+@)?([ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-]+|\[[0123456789abcdefABCDEF:.]+\])(:[0123456789]{1,5})?'
  [[ -z ${SSH_PROXY_JUMP:-} || $SSH_PROXY_JUMP =~ ^$hop(,$hop)*$ ]] ||
    bad_input "SSH_PROXY_JUMP='$(shown "$SSH_PROXY_JUMP")' is not valid; expected a jump host [user@]host[:port] (several joined by commas), or unset"
}

# pinned_ssh_options ARRAY KNOWN_HOSTS: sets ARRAY to the ssh options that
# accept only the key in KNOWN_HOSTS (written by write_known_hosts), never
# prompt, and never read or write the user's own known_hosts files (after
# deploy_ssh_options: none of the operator's ssh_config).
pinned_ssh_options() {
  local -n options_ref=$1
  deploy_ssh_options options_ref
  # shellcheck disable=SC2034 # a nameref: this sets the caller's array
  options_ref+=(
    -o BatchMode=yes
    -o HostKeyAlias="$HOST_ALIAS"
    -o StrictHostKeyChecking=yes
    -o UserKnownHostsFile="$2"
    -o GlobalKnownHostsFile=/dev/null
    -o LogLevel=ERROR
    -p "$TARGET_PORT"
  )
}

# fingerprint KEYLINE: its SHA256 fingerprint.
fingerprint() {
  ssh-keygen -lf - <<<"$1" | awk '{print $2}'
}

# key_blob KEYLINE: type and base64 blob, without the comment.
key_blob() {
  awk '{print $1, $2}' <<<"$1"
}

# target_address: user@host as ssh wants it.
target_address() {
  printf '%s@%s' "$TARGET_USER" "$TARGET_HOST"
}

# The exit code of wait_for_ssh's failures: EXIT_REFUSED before the target
# was changed; a caller sets EXIT_UNKNOWN once it has been.
ssh_wait_exit=$EXIT_REFUSED
# 1: a host key mismatch is retried within the bound like no answer (a server
# whose cloud-init has not written its pinned key yet), and returns 10 only
# when the bound is reached. Nothing is sent to a server whose key does not
# match: ssh stops before authentication.
ssh_wait_retry_mismatch=0

# presented_keys HOST PORT: the host keys HOST presents, as "SHA256:... (TYPE)",
# comma separated, printable ("unknown" if it presents none).
presented_keys() {
  local keys
  keys=$(ssh-keyscan -T 10 -p "$2" "$1" 2>/dev/null | cut -d' ' -f2- | ssh-keygen -lf - 2>/dev/null |
    awk '{printf "%s%s %s", sep, $2, $NF; sep = ", "}') || true
  shown "${keys:-unknown}"
}

# wait_for_ssh <name> <ssh args...>: runs `ssh <args> true` until it succeeds,
# at most CONNECT_ATTEMPTS times and CONNECT_TIMEOUT seconds in total.
# A host key mismatch returns 10; an authentication failure stops at once
# (no retry). Exits with ssh_wait_exit when the bound is reached.
wait_for_ssh() {
  local what=$1
  shift
  local attempt=1 deadline=$((SECONDS + CONNECT_TIMEOUT)) remaining per_try err_file
  err_file=$work_dir/ssh-connect.err
  while :; do
    remaining=$((deadline - SECONDS))
    per_try=$((remaining < 10 ? remaining : 10))
    ((per_try >= 1)) || per_try=1
    if timeout $((per_try + 20)) ssh -o ConnectTimeout="$per_try" "$@" 2>"$err_file"; then
      return 0
    fi
    if grep -qiE 'host key verification failed|identification has changed' "$err_file"; then
      ((ssh_wait_retry_mismatch == 1 && attempt < CONNECT_ATTEMPTS && SECONDS < deadline)) || return 10
      echo "it presents another host key" >"$err_file"
    fi
    if grep -qi 'permission denied' "$err_file"; then
      abort "$ssh_wait_exit" "$what: $(target_address) port $TARGET_PORT refused our key: $(shown "$(tail -n 1 "$err_file")")"
    fi
    if ((attempt >= CONNECT_ATTEMPTS || SECONDS >= deadline)); then
      abort "$ssh_wait_exit" "$what: timed out: $(target_address) port $TARGET_PORT did not answer after $attempt attempts in $((SECONDS - deadline + CONNECT_TIMEOUT))s (CONNECT_ATTEMPTS=$CONNECT_ATTEMPTS, CONNECT_TIMEOUT=$CONNECT_TIMEOUT); last error: $(shown "$(tail -n 1 "$err_file")")"
    fi
    info "$what: attempt $attempt/$CONNECT_ATTEMPTS failed ($(shown "$(tail -n 1 "$err_file")")); retrying"
    remaining=$((deadline - SECONDS))
    sleep $((remaining < 3 ? (remaining > 0 ? remaining : 0) : 3))
    attempt=$((attempt + 1))
  done
}
