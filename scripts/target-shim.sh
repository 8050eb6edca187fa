#!/usr/bin/env bash
# Target-side half of deploy.sh. Nothing is installed on the host: deploy.sh
# sends this file once per deploy, as the command of one SSH session, and then
# talks to it over that session's stdin/stdout:
#   ssh ... "bash -c '<this file>' blog-deploy-shim serve"
# Each request is one line, "<verb> <args...>"; a verb that takes a payload
# (survey, secrets-deliver, commit, import: its first argument is the payload's
# size in bytes) reads that many bytes more. Each reply is zero or more "key=value"
# lines and then "@@ <status>". Progress and errors go to stderr (the operator
# sees them). "ping" gets no reply (the deployer's keepalive during long local
# steps). The deployer may send several requests before it reads their replies
# (one round trip for a batch); they run in order, one at a time, and are
# answered in order. "if-ok <verb> <args...>" runs the request only if the one
# before it exited 0; otherwise its payload is read and dropped, and it is
# answered "@@ 125" (skipped) at once: a batch stops at its first failure.
# `target-shim.sh <verb> <args...>` runs one request by hand, without the lock.
# deploy.sh sends lib/patterns.sh (the store path, unit name and secret name
# patterns it shares with this file) ahead of this text; by hand, it is read
# from next to this file.
#
# Activation, commit, rollback and the rollback timer are transient systemd
# units (systemd-run), on the NixOS host as on the test targets, which boot
# systemd too (tests/integration/harness/target.sh).
#
# State, all under /run/blog-deploy (gone at reboot, with everything it guards):
#   lock          flock(1)ed by the serving shim for the whole deploy: one at a time
#   holder        who holds it: origin, since, shim pid, closure (removed by "end")
#   switch.lock   every switch-to-configuration we start runs under it (flock -o)
#   deploy/       the deploy in flight: return-to (the system that ran before),
#                 new, rollback.sh, commit.sh, secrets.sh, and "decided" (commit or
#                 rollback, written once, under switch.lock: whoever writes it first wins)
#   spool.XXXXXX/ a 0700 spool for one request's payload (the secrets of a
#                 "secrets-deliver"), removed at once
#
# Secrets, on persistent disk (only when the deployer sends HOST_SECRETS):
#   /var/lib/blog-secrets     a relative symlink to the live set: blog-secrets.d/set-<id>
#                             (LoadCredential= reads /var/lib/blog-secrets/<name>)
#   /var/lib/blog-secrets.d/  0700 root:root; set-<id>/ (0700, files 0400 root:root, one per
#                             secret, the value byte-exact), at most two: the live set and,
#                             while a deploy is undecided, the set from before it
#   .../pending               the undecided delivery: previous=<set or ->, set=, return=, new=,
#                             units= (to restart), boot_id= (the boot it was made in),
#                             committed=yes once the commit starts
# A set is replaced by renaming a new symlink over the old one (rename(2)): a reader
# sees the old set or the new one, never a mix. Rollback (deployer, timer, takeover)
# points the link back at the previous set; commit deletes it. After a reboot the
# pending set follows the running system: at boot (blog-secrets-resolve.service,
# which leaves a delivery of its own boot alone), else at the next takeover (see
# secrets.sh's "resolve").
#
# Verbs:
#   begin CLOSURE WAIT IDLE ORIGIN...  takes the lock (waits at most WAIT s; status 75
#                          and holder=... when another deploy keeps it), takes over
#                          after a deployer that died (rolls its unconfirmed system
#                          back first), prints current=, profile=, generation=
#   survey BYTES [CLOSURE] + paths
#                          missing=<path> per path this store lacks, nix_free=, boot_free=
#                          (the paths follow the request, one a line, BYTES in all; not
#                          checked when CLOSURE runs and is the system profile already)
#   boot-needed CLOSURE    boot_needed=<bytes of CLOSURE's kernel+initrd>
#   import BYTES + stream  BYTES of a nix-store --export stream (the missing paths of the
#                          closure, each after the paths it refers to) follow the request,
#                          fed to nix-store --import as they come (never spooled)
#   realise PATH SECONDS   builds a derivation here, or substitutes a store path
#                          (nix-store --realise); prints out=<path>
#   prepare RETURN NEW DEADLINE SECONDS
#                          writes the deploy's state, arms the rollback timer (return to
#                          RETURN after DEADLINE s unless committed), then, if the system
#                          profile is not RETURN, makes RETURN the profile and boot default
#   activate NEW SECONDS   NEW/bin/switch-to-configuration test (running, not booted);
#                          prints switch_status= (its exit status: 4, units failed after
#                          the switch, is the deployer's to judge; with 4, unit= per
#                          failed unit, as failed-units lists them) and activated=
#   failed-units           unit=<unit> per failed unit, and per service restarting after a
#                          failure (auto-restart, non-zero status): what switch-to-configuration
#                          counts
#   commit BYTES SECONDS [DEPLOYER] + units
#                          first lists the failed units (unit=, as failed-units); if one
#                          of them is not among the units that follow the request (one a
#                          line, BYTES in all: those that failed before the deploy),
#                          status 70 and nothing is done. Otherwise profile := NEW,
#                          NEW/bin/switch-to-configuration boot, timer off, and the record
#                          of it in /var/lib/blog-deploy/last (time, generation, system,
#                          by=DEPLOYER, origin); status 76 if
#                          the rollback already happened, 77 if the commit failed and the
#                          host went back to RETURN
#   rollback SECONDS       returns to RETURN now (running, profile, boot default)
#   status                 current=, profile=, generation=, decided=
#   secrets-hashes         secret=<name> <sha256 of its value> per secret of the live set
#   secrets-deliver BYTES RETURN NEW
#                          BYTES follow: "<name> <base64 of the value>" lines, the complete
#                          new set; staged, then swapped in; prints set=, unit=<unit> per unit
#                          that uses an added, changed or removed secret (NEW's and RETURN's
#                          etc/blog/secret-units: "<name> <unit>..." lines)
#   secrets-restart SECONDS
#                          restarts those units if active, activating, reloading or failed:
#                          restarted=<unit>, left=<unit> <state>
#   end                    releases the lock and ends the session
set -euo pipefail

readonly profile=/nix/var/nix/profiles/system
readonly state_dir=/run/blog-deploy
readonly deploy_dir=$state_dir/deploy
readonly switch_lock=$state_dir/switch.lock
readonly rollback_unit=blog-deploy-rollback
readonly secrets_link=/var/lib/blog-secrets
readonly secrets_root=/var/lib/blog-secrets.d
readonly secrets_pending=$secrets_root/pending
if [[ ! -v store_path_re ]]; then
  # shellcheck source=scripts/lib/patterns.sh
  source "$(dirname "${BASH_SOURCE[0]}")/lib/patterns.sh"
fi
# NixOS keeps its tools here; the scripts we leave behind use absolute paths.
export PATH="$PATH:/run/current-system/sw/bin"

abort() {
  echo "target: $*" >&2
  exit 1
}

say() {
  echo "target: $*" >&2
}

# require_store_path WHAT VALUE: VALUE is a store path (the request's arguments
# go into scripts and command lines).
require_store_path() {
  [[ $2 =~ $store_path_re ]] || abort "$1 is not a store path"
}

# sh_quote VALUE: VALUE as one word of a /bin/sh script, in single quotes.
sh_quote() {
  printf "'%s'" "${1//\'/\'\\\'\'}"
}

# tool NAME: an absolute path of NAME whose directory is resolved (on NixOS
# /run/current-system/sw/bin becomes a store path), so that scripts run later
# do not depend on /run/current-system, which a switch changes. The name
# itself stays: nix-env is a link to the multi-call nix binary.
# resolve_tools NAME... sets tools[NAME] for each, found along PATH as
# command -v finds them, with one readlink for all their directories (each
# fork costs, on a busy host: the scripts below need nine tools).
declare -A tools=()
resolve_tools() {
  local name dir found path_dirs=() tool_names=() dirs=() resolved=() i
  IFS=: read -r -a path_dirs <<<"$PATH"
  for name in "$@"; do
    [[ -z ${tools[$name]:-} ]] || continue
    found=""
    for dir in "${path_dirs[@]}"; do
      if [[ -n $dir && -f $dir/$name && -x $dir/$name ]]; then
        found=$dir
        break
      fi
    done
    [[ -n $found ]] || abort "$name not found"
    tool_names+=("$name")
    dirs+=("$found")
  done
  ((${#tool_names[@]} > 0)) || return 0
  mapfile -t resolved < <(readlink -f -- "${dirs[@]}")
  ((${#resolved[@]} == ${#tool_names[@]})) || abort "could not resolve the directories of ${tool_names[*]}"
  for i in "${!tool_names[@]}"; do
    tools[${tool_names[i]}]=${resolved[i]}/${tool_names[i]}
  done
}

tool() {
  resolve_tools "$1"
  printf '%s\n' "${tools[$1]}"
}

# quote_to VAR VALUE: VAR := sh_quote VALUE, without a subshell.
quote_to() {
  printf -v "$1" "'%s'" "${2//\'/\'\\\'\'}"
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

print_state() {
  echo "current=$(readlink -e /run/current-system 2>/dev/null || true)"
  echo "profile=$(readlink -e "$profile" 2>/dev/null || true)"
  echo "generation=$(profile_generation)"
}

holder_summary() {
  local origin="" since="" pid="" closure="" key value
  [[ -f $state_dir/holder ]] || {
    echo "an unknown deploy"
    return
  }
  while IFS='=' read -r key value; do
    case $key in
    origin) origin=$value ;;
    since) since=$value ;;
    pid) pid=$value ;;
    closure) closure=$value ;;
    esac
  done <"$state_dir/holder"
  printf '%s (deploying %s, since %s, %ss ago; shim pid %s on the target)' "${origin:-unknown}" "${closure:-?}" \
    "$(date -u -d "@${since:-0}" '+%Y-%m-%d %H:%M:%S UTC')" "$(($(date +%s) - ${since:-0}))" "${pid:-?}"
}

# run_detached SECONDS COMMAND...: runs COMMAND as a transient unit, outside
# this session (a dropped SSH connection cannot stop it), and waits at most
# SECONDS (+10) for its exit status, which becomes ours. Its last log lines
# reach our stderr when it fails.
run_detached() {
  local seconds=$1 status=0 unit
  shift
  # Microseconds, digits only (EPOCHREALTIME's separator follows the locale); no fork.
  unit=blog-deploy-run-${EPOCHREALTIME//[!0123456789]/}
  timeout "$((seconds + 10))" systemd-run --quiet --wait --collect --unit="$unit" \
    --property=Type=oneshot --property=TimeoutStartSec="$seconds" "$@" || status=$?
  ((status == 0)) || journalctl --no-pager -q -o cat -n 40 -u "$unit" >&2 || true
  return "$status"
}

# locked SECONDS COMMAND...: sets lock_cmd to COMMAND run under switch.lock
# (which COMMAND does not inherit: flock -o), waiting at most SECONDS for it.
lock_cmd=()
locked() {
  local seconds=$1
  shift
  resolve_tools flock
  lock_cmd=("${tools[flock]}" -o -w "$seconds" "$switch_lock" "$@")
}

# cancel_timer: only ever after "decided" is written: a rollback the timer
# might still start finds the decision taken and does nothing.
cancel_timer() {
  # Transient units keep their files here while systemd knows them: none, nothing to cancel.
  [[ -e /run/systemd/transient/$rollback_unit.timer || -e /run/systemd/transient/$rollback_unit.service ]] || return 0
  systemctl stop "$rollback_unit.timer" 2>/dev/null || true
  systemctl reset-failed "$rollback_unit.timer" "$rollback_unit.service" 2>/dev/null || true
}

# run_rollback SECONDS: returns to the deploy's RETURN system now (the same
# script the timer runs; it does nothing once a decision is taken).
run_rollback() {
  local seconds=$1
  locked "$seconds" /bin/sh "$deploy_dir/rollback.sh"
  run_detached "$((seconds * 2))" "${lock_cmd[@]}"
}

# takeover: after the lock was free. A holder record means the previous
# deployer died holding it; an undecided deploy means its new system was
# never confirmed: return to the system it started from, as its timer would.
takeover() {
  local previous returned
  # A switch the previous deployer started (a detached commit, its timer's
  # rollback) finishes first.
  [[ ! -e $switch_lock ]] || flock -w 900 "$switch_lock" true || abort "switch.lock stayed busy for 900s"
  if [[ -f $state_dir/holder ]]; then
    previous=$(holder_summary)
    say "the previous deploy, $previous, ended without releasing the lock: taking it over"
    echo "takeover=$previous"
    rm -f "$state_dir/holder"
  fi
  if [[ -d $deploy_dir && ! -f $deploy_dir/decided && -f $deploy_dir/rollback.sh ]]; then
    returned=$(cat "$deploy_dir/return-to")
    say "its system $(cat "$deploy_dir/new") was never confirmed: returning to $returned first"
    run_rollback 600 || abort "could not return to $returned after the previous deploy"
    cancel_timer
    echo "recovered=$returned"
    echo "unconfirmed=$(cat "$deploy_dir/new")"
  fi
  if [[ -d $deploy_dir && -f $deploy_dir/decided ]]; then
    cancel_timer
    rm -rf "$deploy_dir"
  fi
  rm -rf "$state_dir"/secrets.?????? "$state_dir"/spool.??????
  # A delivery still pending here was cut short by a reboot (which took /run with
  # the deploy's state) or by a rollback that failed half-way.
  if [[ -f $secrets_pending ]]; then
    say "a delivery of secrets was left undecided (a reboot?): the secrets follow the running system"
    write_secrets_script "$state_dir/secrets.sh"
    /bin/sh "$state_dir/secrets.sh" resolve "$(readlink -e /run/current-system 2>/dev/null || echo -)" "$state_dir/restart-units" ||
      abort "could not restore the secrets that were there before the undecided delivery"
  fi
}

cmd_begin() {
  local closure=$1 origin=$2
  require_store_path CLOSURE "$closure"
  takeover
  printf 'origin=%s\nsince=%(%s)T\npid=%s\nclosure=%s\n' "$origin" -1 "$$" "$closure" >"$state_dir/holder.tmp"
  mv "$state_dir/holder.tmp" "$state_dir/holder"
  print_state
}

# runs_and_boots CLOSURE: CLOSURE is the running system and the system profile.
runs_and_boots() {
  [[ -n $1 && $(readlink -e /run/current-system 2>/dev/null) == "$1" && $(readlink -e "$profile" 2>/dev/null) == "$1" ]]
}

cmd_survey() {
  local dir bad free
  if (($# > 0)); then
    # A line each, checked at once (a closure has thousands of paths).
    [[ $* != *$'\n'* ]] || abort "a path to survey holds a newline"
    bad=$(printf '%s\n' "$@" | all_lines_match "$store_path_re") || abort "a path to survey, '$bad', is not a store path"
    nix-store --check-validity --print-invalid "$@" | sed 's/^/missing=/'
  fi
  # Bytes as df counts them (no awk: mawk prints a number above 2^31 as 7.8e+10).
  for dir in /nix /boot; do
    free=""
    [[ ! -d $dir ]] || { read -r _ && read -r free; } < <(df -B1 --output=avail "$dir")
    echo "${dir#/}_free=$free"
  done
}

cmd_boot_needed() {
  local closure=$1 bytes=0 file
  require_store_path CLOSURE "$closure"
  for file in kernel initrd; do
    [[ ! -e $closure/$file ]] || bytes=$((bytes + $(du -bL "$closure/$file" | cut -f1)))
  done
  echo "boot_needed=$bytes"
}

cmd_realise() {
  local drv=$1 seconds=$2 out
  require_store_path PATH "$drv"
  [[ $drv != *.drv || -f $drv ]] || abort "$drv is not in this store (nix copy --derivation first)"
  say "realising $drv here ($(uname -m), at most ${seconds}s)"
  out=$(timeout "$seconds" nix-store --realise "$drv") || abort "building $drv failed"
  # One line per output.
  while IFS= read -r drv; do
    [[ -z $drv ]] || echo "out=$drv"
  done <<<"$out"
}

# The scripts the deploy leaves on the target. Self-contained /bin/sh with
# absolute paths: the timer may run them after this session is gone.
# RETURN "-" (nothing ran before: a fresh test target) leaves nothing to return to.
# Every value in them is quoted (sh_quote): a store path may hold '?', a glob
# character, and nothing the request carried is code.
write_scripts() {
  local return_to=$1 new=$2 q_return q_new q_nix_env q_profile q_dir
  resolve_tools nix-env systemctl ln mv rm cp sed sync flock
  quote_to q_nix_env "${tools[nix-env]}"
  quote_to q_return "$return_to"
  quote_to q_new "$new"
  quote_to q_profile "$profile"
  quote_to q_dir "$deploy_dir"
  if [[ $return_to == - ]]; then
    printf 'echo "nothing ran before this deploy: nothing to return to" >&2\nexit 1\n' >"$deploy_dir/return.sh"
  else
    cat >"$deploy_dir/return.sh" <<SCRIPT
# Makes the system the deploy returns to the running system, the system profile and the boot default.
# Exit 4 of the switch (units failed after it) still leaves it running and booted:
# the deployer judges those units, against the ones that failed before the deploy.
if [ "\$(readlink -e $q_profile)" != $q_return ]; then
  $q_nix_env -p $q_profile --set $q_return || exit 1
fi
$q_return/bin/switch-to-configuration switch
status=\$?
if [ "\$status" = 4 ]; then
  echo "rollback: switch-to-configuration exited 4 (units failed); the host runs the system it returned to" >&2
  exit 0
fi
exit "\$status"
SCRIPT
  fi
  write_secrets_script "$deploy_dir/secrets.sh"
  # The secrets (if this deploy delivers any) go back before the switch, so that the
  # units it starts read the previous set; the units that use them restart after it.
  cat >"$deploy_dir/rollback.sh" <<SCRIPT
# Run under switch.lock by the timer, by "rollback" and by a takeover.
if [ -e $q_dir/decided ]; then
  echo "rollback: nothing to do, the deploy is decided: \$(cat $q_dir/decided)"
  exit 0
fi
echo rollback >$q_dir/decided
echo "rollback: returning to "$q_return
status=0
/bin/sh $q_dir/secrets.sh restore $q_dir/restart-units || status=1
/bin/sh $q_dir/return.sh || status=\$?
/bin/sh $q_dir/secrets.sh restart $q_dir/restart-units || true
exit \$status
SCRIPT
  cat >"$deploy_dir/commit.sh" <<SCRIPT
# Run under switch.lock by "commit": the new system becomes the profile and the boot default,
# and the secrets delivered (if any) stay: the set from before is deleted.
if [ -e $q_dir/decided ]; then
  echo "commit: too late, the deploy is decided: \$(cat $q_dir/decided)" >&2
  exit 76
fi
echo commit >$q_dir/decided
/bin/sh $q_dir/secrets.sh mark-committed
if $q_nix_env -p $q_profile --set $q_new && $q_new/bin/switch-to-configuration boot; then
  /bin/sh $q_dir/secrets.sh discard || echo "commit: could not delete the previous secrets; the next deploy does" >&2
  exit 0
fi
echo "commit: failed; returning to "$q_return >&2
echo rollback >$q_dir/decided
status=77
/bin/sh $q_dir/secrets.sh restore $q_dir/restart-units || status=78
/bin/sh $q_dir/return.sh || status=78
/bin/sh $q_dir/secrets.sh restart $q_dir/restart-units || true
exit \$status
SCRIPT
}

# write_secrets_script PATH: the self-contained /bin/sh script that rollback.sh,
# commit.sh, "secrets-restart" and a takeover run on the secret sets (see the header):
#   restore FILE        the link back to the set from before the pending delivery (or no
#                       link, if there was none), the delivered set deleted; the pending
#                       record, which names the units to restart, is kept as FILE
#   restart [FILE]      restarts FILE's units (default: the pending delivery's) that are
#                       active, activating, reloading or failed; prints restarted=/left=
#   mark-committed      the pending delivery is being committed (persistent)
#   discard             the commit is done: the set from before is deleted
#   resolve CURRENT FILE  after a reboot or a dead deployer: a committed delivery whose
#                       system runs (CURRENT) is kept, any other is restored and its units
#                       restarted (FILE as for restore); prints secrets=kept|restored
write_secrets_script() {
  local path=$1 name q=() value
  resolve_tools systemctl ln mv rm cp sed sync
  for value in "$secrets_link" "$secrets_root" "$secrets_pending"; do
    quote_to value "$value"
    q+=("$value")
  done
  for name in systemctl ln mv rm cp sed sync; do
    quote_to value "${tools[$name]}"
    q+=("$value")
  done
  {
    printf 'link=%s root=%s pending=%s systemctl=%s\n' "${q[@]:0:4}"
    printf 'ln=%s mv=%s rm=%s cp=%s sed=%s sync=%s\n' "${q[@]:4:6}"
    cat <<'SCRIPT'
field() { $sed -n "s/^$1=//p" "$2"; }

# point SET: the link at SET ("-": no link), in one rename(2) of a new link over the old.
point() {
  if [ "$1" = - ]; then
    $rm -f "$link"
  else
    $ln -sfn "${root##*/}/$1" "$link.new" && $mv -fT "$link.new" "$link"
  fi
}

restore() {
  [ -f "$pending" ] || return 0
  $cp "$pending" "$1" || return 1
  point "$(field previous "$pending")" || return 1
  delivered=$(field set "$pending")
  [ -z "$delivered" ] || $rm -rf "${root:?}/$delivered"
  $rm -f "$pending"
  $sync -f "$root"
  echo "secrets: the set from before the deploy is back" >&2
}

restart() {
  [ -f "$1" ] || return 0
  status=0
  for unit in $(field units "$1"); do
    state=$($systemctl is-active -- "$unit" 2>/dev/null)
    case $state in
    active | activating | reloading | failed)
      # A unit that failed for want of its secret may have hit its start
      # limit (nginx does, restarting every 10 s): restart refuses such a
      # unit until its failed state is reset (systemd.unit(5), StartLimitBurst=).
      [ "$state" != failed ] || $systemctl reset-failed -- "$unit" 2>/dev/null || true
      if ! $systemctl restart -- "$unit"; then
        echo "secrets: restarting $unit failed" >&2
        status=1
      fi
      echo "restarted=$unit"
      ;;
    *) echo "left=$unit ${state:-unknown}" ;;
    esac
  done
  return $status
}

discard() {
  [ -f "$pending" ] || return 0
  previous=$(field previous "$pending")
  [ "$previous" = - ] || [ -z "$previous" ] || $rm -rf "${root:?}/$previous"
  $rm -f "$pending"
  $sync -f "$root"
}

case $1 in
restore) restore "$2" ;;
restart) restart "${2:-$pending}" ;;
mark-committed) [ ! -f "$pending" ] || { echo committed=yes >>"$pending" && $sync -f "$root"; } ;;
discard) discard ;;
resolve)
  [ -f "$pending" ] || exit 0
  if [ "$(field committed "$pending")" = yes ] && [ "$2" = "$(field new "$pending")" ]; then
    discard && echo secrets=kept
  else
    restore "$3" && echo secrets=restored && { restart "$3" || true; }
  fi
  ;;
*)
  echo "secrets.sh: unknown command '$1'" >&2
  exit 2
  ;;
esac
SCRIPT
  } >"$path"
}

arm_timer() {
  local seconds=$1 return_to
  read -r return_to <"$deploy_dir/return-to"
  locked 900 /bin/sh "$deploy_dir/rollback.sh"
  cancel_timer
  systemd-run --quiet --unit="$rollback_unit" --on-active="$seconds" \
    --timer-property=AccuracySec=1s --timer-property=RemainAfterElapse=no \
    --description="blog deploy: return to $return_to unless confirmed" \
    "${lock_cmd[@]}"
}

# prepare: status 2 if nothing was changed, 3 if making RETURN the boot
# default again failed (the timer is armed by then).
cmd_prepare() {
  local return_to=$1 new=$2 deadline=$3 seconds=$4
  [[ $return_to == - ]] || require_store_path RETURN "$return_to"
  require_store_path NEW "$new"
  if [[ ! -x $new/bin/switch-to-configuration ]]; then
    say "$new is not a system closure in this store"
    exit 2
  fi
  if [[ $return_to != - && ! -x $return_to/bin/switch-to-configuration ]]; then
    say "$return_to (running) is not a system closure in this store"
    exit 2
  fi
  rm -rf "$deploy_dir"
  mkdir -p "$deploy_dir"
  echo "$return_to" >"$deploy_dir/return-to"
  echo "$new" >"$deploy_dir/new"
  write_scripts "$return_to" "$new" || exit 2
  [[ $return_to != - ]] || return 0
  arm_timer "$deadline" || exit 2
  echo "armed=$deadline"
  if [[ $(readlink -e "$profile" 2>/dev/null || true) != "$return_to" ]]; then
    say "the system profile is $(readlink -e "$profile" 2>/dev/null || echo none), not the running $return_to: making the running system the profile and boot default again first"
    locked "$seconds" /bin/sh "$deploy_dir/return.sh"
    run_detached "$seconds" "${lock_cmd[@]}" || exit 3
    echo "repaired=$(profile_generation)"
  fi
}

# cmd_activate NEW SECONDS: switch-to-configuration test, whose own status (in
# deploy/switch.status: systemd-run --wait reports only that the unit failed)
# is switch_status=. Status 4 (units failed after the switch) is the deployer's
# to judge against the units that failed before the deploy.
cmd_activate() {
  local new=$1 seconds=$2 status=0 switch_status
  require_store_path NEW "$new"
  rm -f "$deploy_dir/switch.status"
  # One line: systemd re-reads a transient unit's command at a daemon-reload.
  # shellcheck disable=SC2016 # expanded by that shell
  locked "$seconds" /bin/sh -c \
    '[ ! -e "$1/decided" ] || { echo "activate: the deploy is already decided: $(cat "$1/decided")" >&2; exit 76; }; "$2/bin/switch-to-configuration" test; s=$?; echo "$s" >"$1/switch.status"; exit "$s"' \
    activate "$deploy_dir" "$new"
  run_detached "$seconds" "${lock_cmd[@]}" || status=$?
  switch_status=""
  { read -r switch_status <"$deploy_dir/switch.status"; } 2>/dev/null || true
  [[ -n $switch_status ]] || switch_status=$status
  echo "switch_status=$switch_status"
  [[ $switch_status == 0 || $switch_status == 4 ]] || abort "switch-to-configuration test of $new exited with status $switch_status"
  # The units the deployer judges exit 4 by, in the same reply.
  [[ $switch_status != 4 ]] || cmd_failed_units
  echo "activated=$new"
}

# cmd_failed_units: as switch-to-configuration counts them: failed units, and
# services restarting after a failure (auto-restart with a non-zero status).
cmd_failed_units() {
  local unit active sub
  # One listing for both (--state matches the active or the sub state).
  while read -r unit _ active sub _; do
    if [[ $active == failed ]]; then
      echo "unit=$unit"
    elif [[ $sub == auto-restart && $unit == *.service ]]; then
      [[ $(systemctl show -p ExecMainStatus --value "$unit") == 0 ]] || echo "unit=$unit"
    fi
  done < <(systemctl list-units --all --state=failed,auto-restart --no-legend --plain)
}

# acme-state CERT: the state of the NixOS acme module's certificate CERT
# (nixpkgs nixos/modules/security/acme/default.nix): acme=none without
# /var/lib/acme/CERT, acme=issued once an order succeeded (acme-success),
# otherwise acme=pending and chain=<base64 of the placeholder's minica CA>.
acme_cert_re='^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$'
cmd_acme_state() {
  local cert=$1 dir
  [[ $cert =~ $acme_cert_re ]] || abort "acme-state: '$cert' is not a domain name"
  dir=/var/lib/acme/$cert
  if [[ ! -d $dir ]]; then
    echo acme=none
  elif [[ -e $dir/acme-success ]]; then
    echo acme=issued
  else
    echo acme=pending
    [[ ! -f $dir/chain.pem ]] || echo "chain=$(base64 -w 0 "$dir/chain.pem")"
  fi
}

# acme-order CERT: starts the order of CERT now (its unit otherwise waits
# RestartSec, 15 minutes, after a failed order).
cmd_acme_order() {
  local cert=$1
  [[ $cert =~ $acme_cert_re ]] || abort "acme-order: '$cert' is not a domain name"
  systemctl restart --no-block -- "acme-order-renew-$cert.service" || abort "could not start acme-order-renew-$cert.service"
  echo ordered=1
}

# cmd_commit FILE SECONDS: FILE lists the units that failed before the deploy;
# any other failed unit now leaves the deploy undecided (status 70).
cmd_commit() {
  local allowed=$1 seconds=$2 deployer=${3:-} status=0 unit fresh=()
  local -A before=()
  while IFS= read -r unit; do
    [[ -z $unit ]] || before[$unit]=1
  done <"$allowed"
  while IFS= read -r unit; do
    echo "$unit"
    unit=${unit#unit=}
    [[ -n ${before[$unit]:-} ]] || fresh+=("$unit")
  done < <(cmd_failed_units)
  if ((${#fresh[@]} > 0)); then
    say "not committing: units failed since the deploy began: ${fresh[*]}"
    return 70
  fi
  locked "$seconds" /bin/sh "$deploy_dir/commit.sh"
  run_detached "$seconds" "${lock_cmd[@]}" || status=$?
  if ((status == 0)); then
    cancel_timer
    record_deploy "$deployer"
  fi
  print_state
  return "$status"
}

# record_deploy DEPLOYER: the record of the last committed deploy,
# /var/lib/blog-deploy/last (persistent, 0644: nothing secret): time= (epoch
# seconds), generation=, system=, by= (DEPLOYER if of deployer_re's form, else
# "unknown"), origin= (the lock holder's, printable). scripts/status.sh and the
# program's preview read it (scripts/host-status.sh). A failure to write it
# fails nothing: the deploy is committed.
record_deploy() {
  local by=$1 origin="" key value dir=/var/lib/blog-deploy
  [[ $by =~ $deployer_re ]] || by=unknown
  if [[ -f $state_dir/holder ]]; then
    while IFS='=' read -r key value; do
      [[ $key != origin ]] || origin=$value
    done <"$state_dir/holder"
  fi
  origin=${origin//[^[:print:]]/?}
  {
    mkdir -p "$dir" &&
      printf 'time=%(%s)T\ngeneration=%s\nsystem=%s\nby=%s\norigin=%s\n' -1 "$(profile_generation)" \
        "$(readlink -e "$profile" 2>/dev/null || true)" "$by" "${origin:0:200}" >"$dir/last.tmp" &&
      mv "$dir/last.tmp" "$dir/last"
  } || say "could not write $dir/last (the record of this deploy); the deploy is committed"
}

cmd_rollback() {
  local seconds=$1 status=0
  run_rollback "$seconds" || status=$?
  cancel_timer
  print_state
  return "$status"
}

# --- Secrets (see the header) ---------------------------------------------

# secrets_live: the directory of the live set ("" if there is none).
secrets_live() {
  local dir
  dir=$(readlink -e "$secrets_link" 2>/dev/null) || return 0
  [[ ! -d $dir ]] || printf '%s\n' "$dir"
}

cmd_secrets_hashes() {
  local dir file name
  dir=$(secrets_live)
  [[ -n $dir ]] || return 0
  for file in "$dir"/*; do
    name=${file##*/}
    [[ -f $file && $name =~ $secret_name_re ]] || continue
    echo "secret=$name $(sha256sum <"$file" | cut -d' ' -f1)"
  done
}

# secrets_adopt: a live set that is not one of ours (a directory made by hand, or a
# link elsewhere) is moved or copied into the root first, so that it can come back.
secrets_adopt() {
  local live adopted
  live=$(secrets_live)
  [[ -n $live && ${live%/*} != "$secrets_root" ]] || return 0
  adopted=$secrets_root/set-adopted-$(date -u +%Y%m%dT%H%M%SZ)-$$
  say "adopting $live as a secret set"
  if [[ -L $secrets_link ]]; then
    cp -a "$live" "$adopted"
  else
    mv "$secrets_link" "$adopted"
  fi
  chown -R root:root "$adopted"
  chmod 700 "$adopted"
  ln -sfn "${secrets_root##*/}/${adopted##*/}" "$secrets_link.new"
  mv -fT "$secrets_link.new" "$secrets_link"
}

# cmd_secrets_deliver FILE RETURN NEW: FILE holds the new set, "<name> <base64>" lines.
cmd_secrets_deliver() {
  local payload=$1 return_to=$2 new=$3 live previous=- set_name dir name encoded system units=() unit rest lock
  local -A names=() affected=()
  [[ $return_to == - ]] || require_store_path RETURN "$return_to"
  require_store_path NEW "$new"
  [[ ! -e $secrets_pending ]] || abort "an earlier delivery of secrets is still undecided ($secrets_pending)"
  umask 077
  mkdir -p "$secrets_root"
  chown root:root "$secrets_root"
  chmod 700 "$secrets_root"
  secrets_adopt
  live=$(secrets_live)
  [[ -z $live ]] || previous=${live##*/}
  # Leftovers of a delivery that died before its swap.
  for dir in "$secrets_root"/set-*; do
    [[ ! -d $dir || $dir == "$live" ]] || rm -rf "$dir"
  done
  rm -f "$secrets_link.new" "$secrets_pending.new"
  set_name=set-$(date -u +%Y%m%dT%H%M%SZ)-$$
  dir=$secrets_root/$set_name
  mkdir "$dir"
  # shellcheck disable=SC2064 # the directory is meant to be expanded now
  trap "rm -rf '$dir'" EXIT # until the swap
  while read -r name encoded; do
    [[ $name =~ $secret_name_re ]] || abort "a secret name in the request is not valid"
    [[ ! -e $dir/$name ]] || abort "the request names the secret '$name' twice"
    printf '%s' "$encoded" | base64 -d >"$dir/$name" || abort "the value of the secret '$name' did not decode"
    chmod 400 "$dir/$name"
    names[$name]=1
  done <"$payload"
  sync -f "$dir"
  # Added, changed or removed, by content.
  for name in "${!names[@]}"; do
    if [[ -z $live || ! -f $live/$name ]] ||
      [[ $(sha256sum <"$live/$name") != "$(sha256sum <"$dir/$name")" ]]; then
      affected[$name]=1
    fi
  done
  if [[ -n $live ]]; then
    for name in "$live"/*; do
      name=${name##*/}
      [[ ! $name =~ $secret_name_re || -n ${names[$name]:-} ]] || affected[$name]=1
    done
  fi
  # Their units, in the new system and in the one a rollback returns to.
  for system in "$new" "$return_to"; do
    [[ $system != - && -f $system/etc/blog/secret-units ]] || continue
    while read -r name rest; do
      [[ -n $name && $name != \#* && -n ${affected[$name]:-} ]] || continue
      for unit in $rest; do
        if [[ ! $unit =~ $unit_name_re ]]; then
          # Not starting with '-', in systemd's characters, with a unit type's suffix.
          say "$system/etc/blog/secret-units: '${unit//[^[:print:]]/?}' is not a unit name (systemd's characters, not starting with '-', ending in .service, .socket, ...); ignored"
        elif [[ " ${units[*]} " != *" $unit "* ]]; then
          units+=("$unit")
        fi
      done
    done <"$system/etc/blog/secret-units"
  done
  # The record, then the swap, under switch.lock: a rollback (the timer's) runs
  # either before (and the deploy is decided: nothing is swapped in) or after.
  mkdir -p "$state_dir"
  exec {lock}>>"$switch_lock"
  flock -w 600 "$lock" || abort "switch.lock stayed busy for 600s"
  if [[ -e $deploy_dir/decided ]]; then
    say "secrets: the deploy is already decided: $(cat "$deploy_dir/decided")"
    exit 76
  fi
  # boot_id: the boot this delivery belongs to. The boot unit that settles an
  # undecided delivery (blog-secrets-resolve, nix/modules/units/secrets-resolve.nix)
  # acts only on one of an earlier boot: this one is this deploy's to decide.
  printf 'previous=%s\nset=%s\nreturn=%s\nnew=%s\nunits=%s\nboot_id=%s\n' "$previous" "$set_name" "$return_to" "$new" "${units[*]}" \
    "$(cat /proc/sys/kernel/random/boot_id)" >"$secrets_pending.new"
  sync "$secrets_pending.new"
  mv "$secrets_pending.new" "$secrets_pending"
  ln -sfn "${secrets_root##*/}/$set_name" "$secrets_link.new"
  mv -fT "$secrets_link.new" "$secrets_link"
  trap - EXIT
  sync -f "$secrets_root"
  exec {lock}>&-
  echo "set=$set_name"
  for unit in "${units[@]}"; do
    echo "unit=$unit"
  done
}

# cmd_secrets_restart SECONDS: the units of the pending delivery, unless the deploy is decided.
cmd_secrets_restart() {
  local seconds=$1
  [[ -f $secrets_pending ]] || return 0
  # shellcheck disable=SC2016 # expanded by that shell
  locked "$seconds" /bin/sh -c \
    '[ ! -e "$1/decided" ] || { echo "restart: the deploy is already decided: $(cat "$1/decided")" >&2; exit 76; }
     exec /bin/sh "$1/secrets.sh" restart' restart "$deploy_dir"
  timeout "$((seconds + 10))" "${lock_cmd[@]}" 9>&-
}

cmd_status() {
  print_state
  echo "decided=$(cat "$deploy_dir/decided" 2>/dev/null || true)"
}

# dispatch VERB ARGS...: one request, in a subshell of its own (its failures
# end it, not the session); our status is its status.
dispatch() {
  local verb=$1
  shift
  case $verb in
  survey) cmd_survey "$@" ;;
  boot-needed) cmd_boot_needed "$1" ;;
  realise) cmd_realise "$1" "$2" ;;
  prepare) cmd_prepare "$1" "$2" "$3" "$4" ;;
  activate) cmd_activate "$1" "$2" ;;
  failed-units) cmd_failed_units ;;
  acme-state) cmd_acme_state "$1" ;;
  acme-order) cmd_acme_order "$1" ;;
  commit) cmd_commit "$1" "$2" "${3:-}" ;;
  rollback) cmd_rollback "$1" ;;
  status) cmd_status ;;
  secrets-hashes) cmd_secrets_hashes ;;
  secrets-deliver) cmd_secrets_deliver "$1" "$2" "$3" ;;
  secrets-restart) cmd_secrets_restart "$1" ;;
  *) abort "unknown verb '$verb'" ;;
  esac
}

have_lock=0

# acquire_lock WAIT: the deploy lock, held on fd 9 by this (serving)
# process; every process it starts that may outlive it gets 9>&-.
acquire_lock() {
  local wait=$1
  mkdir -p "$state_dir"
  exec 9>>"$state_dir/lock"
  if flock -n 9; then
    have_lock=1
    return 0
  fi
  say "the deploy lock is held by $(holder_summary); waiting up to ${wait}s"
  if flock -w "$wait" 9; then
    have_lock=1
    return 0
  fi
  echo "holder=$(holder_summary)"
  return 75
}

release_lock() {
  if ((have_lock == 1)); then
    rm -f "$state_dir/holder"
    exec 9>&-
    have_lock=0
  fi
}

# read_payload BYTES FILE: the BYTES that follow the request line, into FILE
# (a 0700 spool on /run, tmpfs; removed after the request). Status 1 if
# they were cut short.
read_payload() {
  local bytes=$1 file=$2
  [[ $bytes =~ ^(0|[123456789][0123456789]{0,9})$ ]] || abort "a payload size '$bytes' is not a number of bytes"
  (umask 077 && head -c "$bytes" >"$file") || return 1
  [[ $(stat -c %s "$file") == "$bytes" ]]
}

# import_stream BYTES: the next BYTES of stdin into nix-store --import (root:
# a trusted user; the deployer sends what it would send by nix copy
# --no-check-sigs); what the import does not read is read all the same.
import_stream() {
  local bytes=$1 status=0
  say "importing $bytes bytes of store paths"
  head -c "$bytes" | (
    s=0
    nix-store --import >/dev/null || s=$?
    cat >/dev/null
    exit "$s"
  ) || status=$?
  return "$status"
}

# serve: requests from stdin until "end", EOF, or IDLE seconds without one.
spool=""
serve() {
  local idle=600 line verb status=0 last=0 conditional words=() payload=()
  trap '[[ -z $spool ]] || rm -rf "$spool"' EXIT
  mkdir -p "$state_dir"
  while :; do
    if ! IFS= read -r -t "$idle" line; then
      say "no request for ${idle}s, or the deployer went away: ending the session (an armed rollback timer stays armed)"
      exit 0
    fi
    read -r -a words <<<"$line"
    ((${#words[@]} > 0)) || continue
    conditional=0
    if [[ ${words[0]} == if-ok ]]; then
      conditional=1
      words=("${words[@]:1}")
      line=${line#if-ok }
      ((${#words[@]} > 0)) || continue
    fi
    verb=${words[0]}
    [[ $verb != ping ]] || continue
    last=$status
    status=0
    # A payload is read whether or not the request runs: never parsed as requests.
    spool=""
    case $verb in
    survey | secrets-deliver | commit)
      # The values of secrets never reach a command line or a log, only this spool.
      spool=$(mktemp -d "$state_dir/spool.XXXXXX")
      if ! read_payload "${words[1]:-}" "$spool/payload"; then
        say "the request's payload was cut short"
        status=1
      fi
      ;;
    esac
    if [[ $verb == import ]]; then
      # import BYTES, then BYTES of nix-store --export, streamed (a closure may be
      # larger than /run): read in full whether or not it runs, or is imported.
      [[ ${words[1]:-} =~ ^(0|[123456789][0123456789]{0,12})$ ]] || abort "a payload size '${words[1]:-}' is not a number of bytes"
      if ((conditional == 1 && last != 0)); then
        head -c "${words[1]}" >/dev/null
        status=125
      else
        import_stream "${words[1]}" || status=$?
      fi
    elif ((conditional == 1 && last != 0)); then
      status=125
    elif ((status == 0)); then
      case $verb in
      begin)
        # begin CLOSURE WAIT IDLE ORIGIN...: the lock is this process's.
        idle=${words[3]}
        acquire_lock "${words[2]}" || status=$?
        if ((status == 0)); then
          cmd_begin "${words[1]}" "$(cut -d' ' -f5- <<<"$line")" &
          wait "$!" || status=$?
        fi
        ;;
      survey)
        # survey BYTES [CLOSURE], then BYTES of paths, one a line; when CLOSURE
        # runs and is the profile already, the deployer copies nothing: free space only.
        payload=()
        if ((words[1] > 0)) && ! runs_and_boots "${words[2]:-}"; then
          mapfile -t payload <"$spool/payload"
        fi
        dispatch survey "${payload[@]}" &
        wait "$!" || status=$?
        ;;
      secrets-deliver)
        # secrets-deliver BYTES RETURN NEW, then BYTES.
        dispatch secrets-deliver "$spool/payload" "${words[2]}" "${words[3]}" &
        wait "$!" || status=$?
        ;;
      commit)
        # commit BYTES SECONDS [DEPLOYER], then BYTES: the units that failed before the deploy.
        dispatch commit "$spool/payload" "${words[2]}" "${words[3]:-}" &
        wait "$!" || status=$?
        ;;
      end)
        release_lock
        echo "@@ 0"
        exit 0
        ;;
      *)
        dispatch "${words[@]}" &
        wait "$!" || status=$?
        ;;
      esac
    fi
    if [[ -n $spool ]]; then
      rm -rf "$spool"
      spool=""
    fi
    echo "@@ $status"
  done
}

main() {
  case ${1:-} in
  serve) serve ;;
  "") abort "usage: target-shim.sh serve | <verb> <args...>" ;;
  *) dispatch "$@" ;;
  esac
}

main "$@"
