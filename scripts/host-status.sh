#!/usr/bin/env bash
# What the stack's host runs and how it fares, asked of the host read-only:
# one SSH session (the deploy's conventions: pinned host key, -F /dev/null,
# BatchMode, SSH_PROXY_JUMP, keys on a tmpfs) that runs a fixed script which
# changes nothing. Every line the host sends back is checked against its
# exact form (host_kinds below) before anything reads it; one line of
# another form and the whole answer is refused. Run by scripts/status.sh and,
# during `pulumi preview`, by the program (src/hostStatus.ts, a
# command:local:run invoke). Prints one JSON line and always exits 0:
#   {"state":"ok","current":...,"currentSince":...,"profile":...,
#    "generation":...,"runningGeneration":...,"generationSince":...,
#    "last":{"time","generation","system","by","origin"}|null,
#    "failedUnits":[...],"certificate":"<PEM>"|null,
#    "disks":[{"mount","usedPercent"}],"backup":{...}|null}
#   {"state":"unknown","reason":"<why>"}    no key, unreachable, another host key, a bad answer
#
# Input, from the environment: TARGET_HOST, HOST_KEY (required), TARGET_PORT
# (22), TARGET_USER (root), SSH_PRIVATE_KEY (else ssh-agent), SSH_PROXY_JUMP,
# DOMAIN (the ACME certificate to read; none without), STATUS_TIMEOUT (30 s:
# the whole session, connection included).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/common.sh
source "$script_dir/lib/common.sh"

work_dir=""
ssh_opts=()
identity_opts=()

# shellcheck disable=SC2317 # run by the exit trap
cleanup() {
  local status=$?
  [[ -z $work_dir ]] || rm -rf "$work_dir"
  exit "$status"
}

# say JQ-ARGS...: the one JSON line, then exit 0.
say() {
  jq -cn "$@"
  exit 0
}

unknown() {
  # shellcheck disable=SC2016 # a jq variable
  say --arg reason "$1" '{state: "unknown", reason: $reason}'
}

# The host's side: fixed text, read-only (readlink, stat, systemctl list-units,
# df, base64 of two files). $1 is DOMAIN, checked below to be a domain name.
# shellcheck disable=SC2016 # expanded by the host's shell
readonly HOST_SCRIPT='export PATH="$PATH:/run/current-system/sw/bin"
profiles=/nix/var/nix/profiles
current=$(readlink -e /run/current-system 2>/dev/null || true)
echo "current=$current"
echo "current_since=$(stat -c %Y /run/current-system 2>/dev/null || true)"
echo "profile=$(readlink -e $profiles/system 2>/dev/null || true)"
link=$(readlink $profiles/system 2>/dev/null || true)
g=${link##*/}; g=${g#system-}; g=${g%-link}
echo "generation=$g"
[ -z "$link" ] || echo "generation_since=$(stat -c %Y "$profiles/${link##*/}" 2>/dev/null || true)"
for l in $profiles/system-*-link; do
  [ -n "$current" ] && [ -e "$l" ] || continue
  if [ "$(readlink -e "$l")" = "$current" ]; then r=${l##*/}; r=${r#system-}; echo "running_generation=${r%-link}"; fi
done
if [ -f /var/lib/blog-deploy/last ]; then
  while IFS="=" read -r k v; do
    case $k in time|generation|system|by|origin) echo "last_$k=$v" ;; esac
  done </var/lib/blog-deploy/last
fi
systemctl list-units --all --state=failed --no-legend --plain 2>/dev/null | while read -r u _; do [ -z "$u" ] || echo "failed=$u"; done
if [ -n "$1" ] && [ -f "/var/lib/acme/$1/cert.pem" ]; then echo "cert=$(base64 -w 0 "/var/lib/acme/$1/cert.pem")"; fi
df -P / /nix /boot /data 2>/dev/null | while read -r _ _ _ _ pct mount; do
  case $pct in *%) echo "disk=$mount ${pct%%%}" ;; esac
done
if [ -f /var/lib/blog-backup/status.json ]; then echo "backup=$(base64 -w 0 /var/lib/blog-backup/status.json)"; fi
echo "end=1"'

# Every key the host may send, and the form of its value.
declare -rA host_kinds=(
  [current]=store_path_or_empty [profile]=store_path_or_empty [current_since]=uint_or_empty
  [generation]=uint_or_empty [generation_since]=uint_or_empty [running_generation]=uint
  [last_time]=uint [last_generation]=uint [last_system]=store_path [last_by]=deployer
  [last_origin]=text [failed]=unit [cert]=base64 [disk]=disk [backup]=base64 [end]=bit
)
readonly max_lines=2000 max_length=65536

# form_ok KIND VALUE: lib/common.sh's value_form_ok; text here is at most 200
# printable characters.
form_ok() {
  case $1 in
  text) ((${#2} <= 200)) && printable "$2" ;;
  *) value_form_ok "$1" "$2" ;;
  esac
}

parse_inputs() {
  has_value TARGET_HOST || unknown "the host's address is not known (TARGET_HOST)"
  has_value HOST_KEY || unknown "the host's key is not known (HOST_KEY)"
  TARGET_PORT=${TARGET_PORT:-22}
  TARGET_USER=${TARGET_USER:-root}
  STATUS_TIMEOUT=${STATUS_TIMEOUT:-30}
  DOMAIN=${DOMAIN:-}
  [[ $TARGET_PORT =~ ^[0123456789]{1,5}$ ]] || unknown "TARGET_PORT='$(shown "$TARGET_PORT")' is not a port"
  [[ $STATUS_TIMEOUT =~ ^[123456789][0123456789]{0,4}$ ]] || unknown "STATUS_TIMEOUT='$(shown "$STATUS_TIMEOUT")' is not a number of seconds"
  [[ $TARGET_HOST =~ ^[A-Za-z0-9._:%]([A-Za-z0-9._:%-]*)$ ]] || unknown "TARGET_HOST is not an address or host name"
  [[ $TARGET_USER =~ ^[A-Za-z0-9._][A-Za-z0-9._-]*$ ]] || unknown "TARGET_USER='$(shown "$TARGET_USER")' is not a user name"
  [[ -z $DOMAIN || $DOMAIN =~ ^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$ ]] || unknown "DOMAIN='$(shown "$DOMAIN")' is not a domain name"
  # The checks of common.sh abort with a message on stderr; here they become the reason.
  (require_host_key HOST_KEY) 2>/dev/null || unknown "HOST_KEY is not one public key line of a type the deploy pins"
  (check_proxy_jump) 2>/dev/null || unknown "SSH_PROXY_JUMP is not [user@]host[:port] hops joined by commas"
  if ! has_value SSH_PRIVATE_KEY && [[ -z ${SSH_AUTH_SOCK:-} ]]; then
    unknown "no SSH key here (no SSH_PRIVATE_KEY, blog:sshPrivateKey or ssh-agent): the host was not asked"
  fi
}

# ask_host: the host's answer, lines in $work_dir/answer; a reason on failure.
ask_host() {
  local status=0 quoted
  make_work_dir
  identity_options identity_opts SSH_PRIVATE_KEY "$work_dir/id_admin"
  write_known_hosts "$work_dir/known_hosts" "$HOST_KEY"
  pinned_ssh_options ssh_opts "$work_dir/known_hosts"
  ssh_opts+=(-o ControlMaster=no -o ControlPath=none -o ConnectTimeout="$STATUS_TIMEOUT" "${identity_opts[@]}")
  quoted="'${HOST_SCRIPT//\'/\'\\\'\'}'"
  timeout "$STATUS_TIMEOUT" ssh "${ssh_opts[@]}" "$(target_address)" "sh -c $quoted blog-status '$DOMAIN'" \
    </dev/null >"$work_dir/answer" 2>"$work_dir/err" || status=$?
  ((status == 0)) && return 0
  if grep -qiE 'host key verification failed|identification has changed' "$work_dir/err"; then
    unknown "the host presents another host key than the stack's hostKey ($(fingerprint "$HOST_KEY")): it was not asked"
  elif grep -qi 'permission denied' "$work_dir/err"; then
    unknown "the host refused the SSH key"
  elif ((status == 124)); then
    unknown "the host did not answer within ${STATUS_TIMEOUT}s (STATUS_TIMEOUT)"
  fi
  # ssh's message may name the address, which behind Cloudflare's proxy stays hidden.
  unknown "the host could not be reached or its script failed (ssh exit $status: $(shown "$(tail -n 1 "$work_dir/err" | tr -d "\r" | sed "s/$(sed 's/[].[^$*\/]/\\&/g' <<<"$TARGET_HOST")/[host]/g")"))"
}

# check_answer: every line KEY=VALUE of host_kinds, of its form; the last is end=1.
check_answer() {
  local line key n=0 last=""
  while IFS= read -r line || [[ -n $line ]]; do
    n=$((n + 1))
    ((n <= max_lines && ${#line} <= max_length)) || unknown "the host's answer is longer than the script ever sends"
    key=${line%%=*}
    [[ $line == *=* && -v host_kinds[$key] ]] || unknown "the host's answer holds a line of another form ('$(shown "$line")')"
    form_ok "${host_kinds[$key]}" "${line#*=}" || unknown "the host's answer holds $key='$(shown "${line#*=}")', not of its form"
    last=$line
  done <"$work_dir/answer"
  [[ $last == end=1 ]] || unknown "the host's answer ended early"
}

# values KEY: every value of KEY, one a line.
values() {
  sed -n "s/^$1=//p" "$work_dir/answer"
}

value() {
  values "$1" | head -n 1
}

# backup_json: the host's status.json, decoded, as an object of the fields read
# (each of its form), or null.
backup_json() {
  local raw
  raw=$(value backup)
  [[ -n $raw ]] || {
    echo null
    return 0
  }
  base64 -d <<<"$raw" 2>/dev/null | jq -c '
    def time: if type == "string" and test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})?$") then . else null end;
    if type == "object" then {
      result: (if .result == "success" or .result == "failed" then .result else null end),
      time: (.time | time),
      lastSuccess: (.lastSuccess | time)
    } else null end' 2>/dev/null || echo null
}

# certificate: the PEM the host sent (decoded), or "".
certificate() {
  local raw pem
  raw=$(value cert)
  [[ -n $raw ]] || return 0
  pem=$(base64 -d <<<"$raw" 2>/dev/null) || return 0
  [[ $pem == "-----BEGIN CERTIFICATE-----"* ]] || return 0
  printf '%s\n' "$pem"
}

report() {
  local last=null
  if [[ -n $(value last_system) ]]; then
    # shellcheck disable=SC2016 # jq variables
    last=$(jq -cn --arg time "$(value last_time)" --arg generation "$(value last_generation)" --arg system "$(value last_system)" \
      --arg by "$(value last_by)" --arg origin "$(value last_origin)" \
      '{time: ($time | if . == "" then null else tonumber end), generation: ($generation | if . == "" then null else tonumber end),
        system: $system, by: (if $by == "" then null else $by end), origin: (if $origin == "" then null else $origin end)}')
  fi
  # shellcheck disable=SC2016 # jq variables
  say --arg current "$(value current)" --arg currentSince "$(value current_since)" --arg profile "$(value profile)" \
    --arg generation "$(value generation)" --arg running "$(value running_generation)" --arg generationSince "$(value generation_since)" \
    --argjson last "$last" --argjson backup "$(backup_json)" --arg certificate "$(certificate)" \
    --argjson failed "$(values failed | jq -R . | jq -sc .)" \
    --argjson disks "$(values disk | jq -R 'split(" ") | {mount: .[0], usedPercent: (.[1] | tonumber)}' | jq -sc 'unique_by(.mount)')" \
    'def n: if . == "" then null else tonumber end; def s: if . == "" then null else . end;
     {state: "ok", current: ($current | s), currentSince: ($currentSince | n), profile: ($profile | s),
      generation: ($generation | n), runningGeneration: ($running | n), generationSince: ($generationSince | n),
      last: $last, failedUnits: $failed, certificate: ($certificate | s), disks: $disks, backup: $backup}'
}

main() {
  parse_args "${BASH_SOURCE[0]}" "$@"
  command -v jq >/dev/null || {
    echo '{"state":"unknown","reason":"jq is not installed where pulumi runs"}'
    exit 0
  }
  install_exit_traps cleanup
  parse_inputs
  ask_host
  check_answer
  report
}

main "$@"
