#!/usr/bin/env bash
# Usage: npm run status -- [--json] [--stack NAME]
#        bash scripts/status.sh [--json] [--stack NAME]
#
# Shows, for the stack (the selected one, or NAME), what needs a person, each
# finding with the one command that deals with it:
#   cloud    drift: `pulumi refresh --preview-only` with the stack's config,
#            the resources whose cloud side differs from the state
#   system   whether the host runs and boots the stack's system (its output
#            systemClosure): which generation, since when, deployed by whom
#            (the host's record of the last deploy, /var/lib/blog-deploy/last)
#   units    failed systemd units
#   cert     the ACME certificate of the domain: days left (a finding under 14)
#   disks    /, /nix, /boot and the data volume: a finding over 85% used
#   backup   the newest backup's age (a finding over 36 h, or a failed run),
#            when the host makes backups
# The host is asked read-only (scripts/host-status.sh: the deploy's pinned
# host key, no ssh_config, bounded); nothing is changed anywhere.
#
# Required: the Pulumi CLI logged in to the stack's backend (and
# PULUMI_CONFIG_PASSPHRASE for a passphrase stack), the providers' tokens in
# the environment or the stack config (the refresh asks the clouds), jq, and
# an SSH key the host accepts: SSH_PRIVATE_KEY, else blog:sshPrivateKey, else
# the ssh-agent.
# Optional environment: SSH_PROXY_JUMP (a jump host, as for deploys),
# STATUS_TIMEOUT (30 s: the host's answer), REFRESH_TIMEOUT (600 s).
# Defaults: the selected stack, human-readable output.
#
# Example:
#   npm run status -- --stack production
#   bash scripts/status.sh --json | jq '.findings[] | select(.level != "ok")'
#
# Exit codes: 0 clean; 1 bad input; 2 a check could not run (the stack's
# outputs, the refresh or the host could not be read) and nothing else was
# found; 3 something needs a person (each finding says what to do).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project_dir=$(cd "$script_dir/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$script_dir/lib/common.sh"

readonly EXIT_UNCHECKED=2 EXIT_NEEDS_PERSON=3
readonly CERT_WARN_DAYS=14 DISK_WARN_PERCENT=85 BACKUP_STALE_HOURS=36

json=0
stack=""
stack_args=()
work_dir=""
findings=() # JSON objects, one an element
outputs='{}'
host='{}'
ssh_hint=""

usage_error() {
  abort "$EXIT_BAD_INPUT" "$1 (see --help)"
}

parse_command() {
  while (($# > 0)); do
    case $1 in
    -h | --help) parse_args "${BASH_SOURCE[0]}" --help ;;
    --json) json=1 ;;
    --stack)
      (($# >= 2)) || usage_error "--stack needs a stack name"
      stack=$2
      shift
      ;;
    --stack=*) stack=${1#--stack=} ;;
    *) usage_error "unexpected argument '$(shown "$1")'; expected --json or --stack NAME" ;;
    esac
    shift
  done
  if [[ -n $stack ]]; then
    [[ $stack =~ ^[A-Za-z0-9._/-]{1,200}$ ]] || usage_error "--stack '$(shown "$stack")' is not a stack name"
    stack_args=(--stack "$stack")
  fi
  STATUS_TIMEOUT=${STATUS_TIMEOUT:-30}
  REFRESH_TIMEOUT=${REFRESH_TIMEOUT:-600}
  require_uint STATUS_TIMEOUT 1
  require_uint REFRESH_TIMEOUT 1
  command -v jq >/dev/null || abort "$EXIT_BAD_INPUT" "jq is not on PATH (nix develop ./nix has it)"
  command -v pulumi >/dev/null || abort "$EXIT_BAD_INPUT" "pulumi is not on PATH (nix develop ./nix has it)"
}

cleanup() {
  local status=$?
  [[ -z $work_dir ]] || rm -rf "$work_dir"
  exit "$status"
}

# finding CHECK LEVEL MESSAGE [DO]: LEVEL ok, info, problem or unknown.
finding() {
  # shellcheck disable=SC2016 # jq variables
  findings+=("$(jq -cn --arg check "$1" --arg level "$2" --arg message "$3" --arg "do" "${4:-}" \
    '{check: $check, level: $level, message: $message} + (if $do == "" then {} else {do: $do} end)')")
}

in_project() {
  (cd "$project_dir" && timeout "$1" "${@:2}")
}

# read_outputs: the stack's outputs (secrets shown: behind the proxy the
# addresses are secret; nothing of them is printed).
read_outputs() {
  local out
  if ! out=$(in_project 120 pulumi stack output --json --show-secrets "${stack_args[@]}" 2>"$work_dir/err") ||
    ! jq -e 'type == "object"' <<<"$out" >/dev/null 2>&1; then
    finding stack unknown "the stack's outputs could not be read: $(shown "$(tail -n 1 "$work_dir/err")")" \
      "pulumi stack select <stack> (or --stack NAME), then npm run status"
    return 0
  fi
  outputs=$out
  [[ -n $stack ]] || stack=$(in_project 60 pulumi stack --show-name 2>/dev/null) || stack=""
}

output() {
  jq -r --arg k "$1" '.[$k] // "" | if type == "string" then . else tojson end' <<<"$outputs"
}

# --- cloud drift -----------------------------------------------------------

check_cloud() {
  local status=0 changed n
  in_project "$REFRESH_TIMEOUT" pulumi refresh --preview-only --json --non-interactive --color never "${stack_args[@]}" \
    >"$work_dir/refresh.json" 2>"$work_dir/refresh.err" || status=$?
  if ((status != 0)) || ! jq -e 'type == "object"' "$work_dir/refresh.json" >/dev/null 2>&1; then
    finding cloud unknown "pulumi refresh --preview-only failed (exit $status): $(shown "$(grep -v '^\s*$' "$work_dir/refresh.err" | tail -n 1)")" \
      "pulumi refresh --preview-only${stack:+ --stack $stack}"
    return 0
  fi
  # Every resource the refresh would change in the state: its name, type and what
  # differs (gone from the cloud, or the properties that changed).
  # A refresh step is a change when the resource is gone or its outputs differ.
  changed=$(jq -r '
    [.steps // [] | .[] | select(.op != "same" and .op != "read")
      | select((.urn // "") | test("::pulumi:(pulumi:Stack|providers:)") | not)
      | (.urn // "" | split("::") | last) as $name
      | (.newState.type // .oldState.type // (.urn | split("::") | .[-2])) as $type
      | (.oldState.outputs // {}) as $old | (.newState.outputs // {}) as $new
      | if .op == "delete" or (.newState == null and .oldState != null) then "\($name) (\($type)): gone from the cloud"
        elif $old != $new then "\($name) (\($type)): changed in the cloud: \([($old + $new) | keys[] | select($old[.] != $new[.])] | join(", "))"
        elif .op != "refresh" then "\($name) (\($type)): \(.op)"
        else empty end
    ] | .[]' "$work_dir/refresh.json" 2>/dev/null) || changed=""
  if [[ -z $changed ]]; then
    n=$(jq '[.steps // [] | .[] | select((.urn // "") | test("::pulumi:(pulumi:Stack|providers:)") | not)] | length' "$work_dir/refresh.json" 2>/dev/null || echo "?")
    finding cloud ok "no drift: the cloud matches the state ($n resources refreshed)"
    return 0
  fi
  finding cloud problem "drift: the cloud differs from the stack's state: $(tr '\n' ';' <<<"$changed" | sed 's/;$//; s/;/; /g')" \
    "pulumi up --refresh${stack:+ --stack $stack}"
}

# --- the host ------------------------------------------------------------------

# ask_host: scripts/host-status.sh with the stack's host, key and login.
ask_host() {
  local address key port private="" domain url which
  address=$(jq -r 'if type == "object" then (.ipv4 // .ipv6 // "") else "" end' <<<"$outputs")
  key=$(output hostKey)
  url=$(output url)
  domain=${url#https://}
  domain=${domain%%/*}
  port=$(in_project 60 pulumi config get blog:sshPort "${stack_args[@]}" 2>/dev/null) || port=22
  if [[ -z ${SSH_PRIVATE_KEY:-} ]]; then
    private=$(untraced in_project 60 pulumi config get blog:sshPrivateKey "${stack_args[@]}" 2>/dev/null) || private=""
  fi
  which=ipv4
  [[ -n $(output ipv4) ]] || which=ipv6
  ssh_hint="ssh -p $port root@\$(pulumi stack output --show-secrets $which${stack:+ --stack $stack})"
  if [[ -z $address || -z $key ]]; then
    host='{"state":"unknown","reason":"the stack has no host address or hostKey output (is it deployed? pulumi up first)"}'
    return 0
  fi
  host=$(untraced env TARGET_HOST="$address" TARGET_PORT="$port" HOST_KEY="$key" DOMAIN="$domain" \
    STATUS_TIMEOUT="$STATUS_TIMEOUT" SSH_PRIVATE_KEY="${SSH_PRIVATE_KEY:-$private}" \
    bash "$script_dir/host-status.sh" 2>/dev/null | tail -n 1) || true
  jq -e 'type == "object" and (.state == "ok" or .state == "unknown")' <<<"$host" >/dev/null 2>&1 ||
    host='{"state":"unknown","reason":"scripts/host-status.sh printed no answer"}'
}

hostv() {
  jq -r "$1 // \"\"" <<<"$host"
}

when() {
  date -u -d "@$1" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo "?"
}

check_system() {
  local deployed current profile running generation since last_by last_time last_origin urn fix who=""
  deployed=$(output systemClosure)
  current=$(hostv .current)
  profile=$(hostv .profile)
  running=$(hostv .runningGeneration)
  generation=$(hostv .generation)
  since=$(hostv .currentSince)
  last_by=$(hostv .last.by)
  last_time=$(hostv .last.time)
  last_origin=$(hostv .last.origin)
  if [[ -n $last_time && $(hostv .last.system) == "$current" ]]; then
    who=", deployed by ${last_by:-an unrecorded deployer} at $(when "$last_time")${last_origin:+ ($last_origin)}"
  elif [[ -n $last_time ]]; then
    who="; the last deploy was by ${last_by:-an unrecorded deployer} at $(when "$last_time") ($(hostv .last.system))"
  else
    who="; the host holds no record of who deployed it (deploys record it since this version)"
  fi
  urn=$(in_project 120 pulumi stack export "${stack_args[@]}" 2>/dev/null |
    jq -r '[.deployment.resources // [] | .[] | select(.urn | endswith("::blog-switch")) | select(.delete != true) | .urn][0] // ""' 2>/dev/null) || urn=""
  fix="pulumi up --replace '${urn:-<urn of blog-switch: pulumi stack --show-urns>}'${stack:+ --stack $stack}"
  if [[ -z $deployed ]]; then
    finding system unknown "the stack has no systemClosure output: no deploy has succeeded yet" "pulumi up${stack:+ --stack $stack}"
  elif [[ $current == "$deployed" && $profile == "$deployed" ]]; then
    finding system ok "the host runs and boots the stack's system, generation ${running:-?} since $(when "${since:-0}")$who"
  elif [[ $current == "$deployed" ]]; then
    finding system problem "the host runs the stack's system but boots another (its system profile is ${profile:-not set}, generation ${generation:-?}): it would come back from a reboot with another system" "$fix"
  else
    finding system problem "the host runs ${current:-no system} (generation ${running:-none of the profile}, since $(when "${since:-0}")), not the stack's system $deployed: a hand rollback or a hand-run switch$who" "$fix"
  fi
}

check_units() {
  local unit n=0
  while IFS= read -r unit; do
    [[ -n $unit ]] || continue
    n=$((n + 1))
    finding units problem "the unit $unit has failed" "$ssh_hint journalctl -b -u $unit"
  done < <(jq -r '.failedUnits // [] | .[]' <<<"$host")
  ((n > 0)) || finding units ok "no failed unit"
}

check_certificate() {
  local pem end end_s days domain
  pem=$(hostv .certificate)
  domain=$(output url)
  domain=${domain#https://}
  domain=${domain%%/*}
  if [[ -z $pem ]]; then
    finding cert info "no ACME certificate of $domain on the host (/var/lib/acme/$domain): a host with blog.host.tls other than acme, or one that never ordered it"
    return 0
  fi
  if ! end=$(openssl x509 -noout -enddate <<<"$pem" 2>/dev/null) || ! end_s=$(date -u -d "${end#notAfter=}" +%s 2>/dev/null); then
    finding cert unknown "the host's certificate of $domain could not be read" "$ssh_hint ls -l /var/lib/acme/$domain"
    return 0
  fi
  days=$(((end_s - $(date +%s)) / 86400))
  if ((days < CERT_WARN_DAYS)); then
    finding cert problem "the ACME certificate of $domain expires in $days days ($(when "$end_s")); the host renews it from 30 days before, so its renewals fail" \
      "$ssh_hint systemctl start acme-order-renew-$domain.service"
  else
    finding cert ok "the ACME certificate of $domain has $days days left ($(when "$end_s"))"
  fi
}

check_disks() {
  local mount pct n=0
  while read -r mount pct; do
    [[ -n $mount ]] || continue
    n=$((n + 1))
    if ((pct > DISK_WARN_PERCENT)); then
      if [[ $mount == /data ]]; then
        finding disks problem "the data volume ($mount) is $pct% full" "$ssh_hint du -xh --max-depth=2 /data | sort -h | tail"
      else
        finding disks problem "$mount is $pct% full" "$ssh_hint nix-collect-garbage --delete-older-than 30d"
      fi
    else
      finding disks ok "$mount is $pct% full"
    fi
  done < <(jq -r '.disks // [] | .[] | "\(.mount) \(.usedPercent)"' <<<"$host")
  ((n > 0)) || finding disks unknown "the host reported no disk use"
}

check_backup() {
  local result last last_s hours
  [[ $(hostv .backup) != "" ]] || return 0
  result=$(hostv .backup.result)
  last=$(hostv .backup.lastSuccess)
  if [[ -z $last ]]; then
    finding backup problem "the host has never made a good backup (last run: ${result:-unknown})" "bash scripts/backup.sh run"
    return 0
  fi
  last_s=$(date -u -d "$last" +%s 2>/dev/null) || last_s=0
  hours=$((($(date +%s) - last_s) / 3600))
  if [[ $result == failed ]]; then
    finding backup problem "the last backup run failed; the newest good one is $hours h old ($last)" "bash scripts/backup.sh run"
  elif ((hours > BACKUP_STALE_HOURS)); then
    finding backup problem "the newest backup is $hours h old ($last): the nightly backup has not run since" "bash scripts/backup.sh run"
  else
    finding backup ok "the newest backup is $hours h old ($last)"
  fi
}

check_host() {
  ask_host
  if [[ $(hostv .state) != ok ]]; then
    finding host unknown "the host could not be asked: $(hostv .reason)" "SSH_PRIVATE_KEY=... npm run status (or ssh-add the deploy key)"
    return 0
  fi
  check_system
  check_units
  check_certificate
  check_disks
  check_backup
}

# --- the report ------------------------------------------------------------------

report() {
  local all code=0 line
  all=$(printf '%s\n' "${findings[@]}" | jq -sc .)
  if jq -e 'any(.[]; .level == "problem")' <<<"$all" >/dev/null; then
    code=$EXIT_NEEDS_PERSON
  elif jq -e 'any(.[]; .level == "unknown")' <<<"$all" >/dev/null; then
    code=$EXIT_UNCHECKED
  fi
  if ((json == 1)); then
    # shellcheck disable=SC2016 # jq variables
    jq -n --arg stack "$stack" --argjson findings "$all" --argjson exit "$code" '{stack: $stack, exit: $exit, findings: $findings}'
  else
    printf 'Status of the stack %s\n' "${stack:-(selected)}"
    while IFS= read -r line; do
      printf '%s\n' "$line"
    done < <(jq -r '.[] | "  \(.level | if . == "problem" then "NEEDS A PERSON" elif . == "unknown" then "NOT CHECKED" elif . == "info" then "info" else "ok" end | .[0:14] + (" " * (14 - length)))  \(.check): \(.message)" + (if .do then "\n  " + (" " * 16) + "do: \(.do)" else "" end)' <<<"$all" | sanitize_stream)
    case $code in
    0) echo "Clean: nothing needs a person." ;;
    "$EXIT_UNCHECKED") echo "Some checks could not run (NOT CHECKED above); nothing else needs a person. Exit $code." ;;
    *) echo "Something needs a person: each NEEDS A PERSON line says what to do. Exit $code." ;;
    esac
  fi
  return "$code"
}

main() {
  parse_command "$@"
  install_exit_traps cleanup
  make_work_dir
  read_outputs
  if [[ $outputs != '{}' ]]; then
    check_cloud
    check_host
  fi
  report
}

main "$@"
