# shellcheck shell=bash
# The weekly clean-up of blog-gc.service (nix/modules/upkeep.nix): old system
# generations go, the boot menu is rewritten without them, and the store paths
# nothing references any more are collected. All of it under the deploy's lock
# (scripts/target-shim.sh: `flock /run/blog-deploy/lock` for a whole deploy),
# so it never runs during a deploy: a deploy's new closure is unrooted between
# its copy and its activation, and its commit adds a generation.
#
# Environment: KEEP_GENERATIONS (generations kept, the current one included),
# LOCK_WAIT (seconds to wait for a deploy to finish before skipping this run).
set -euo pipefail

readonly state_dir=/run/blog-deploy
readonly profile=/nix/var/nix/profiles/system
keep=${KEEP_GENERATIONS:-}
lock_wait=${LOCK_WAIT:-}

check_input() {
  [[ $keep =~ ^[1-9][0-9]{0,2}$ ]] || {
    echo "KEEP_GENERATIONS='$keep' is not valid; expected an integer from 1 to 999" >&2
    exit 1
  }
  [[ $lock_wait =~ ^[0-9]{1,6}$ ]] || {
    echo "LOCK_WAIT='$lock_wait' is not valid; expected seconds, an integer" >&2
    exit 1
  }
}

# holder_origin: who holds the deploy lock, as the deploy recorded it (printable
# characters only: the record is data).
holder_origin() {
  [[ -f $state_dir/holder ]] || {
    echo "no holder recorded"
    return 0
  }
  sed -n 's/^origin=//p' "$state_dir/holder" | head -n 1 | tr -c '[:print:]\n' '?'
}

open_deploy_lock() {
  mkdir -p "$state_dir"
  exec 9>>"$state_dir/lock"
}

# take_deploy_lock: the deploy lock on fd 9, waiting at most LOCK_WAIT seconds.
take_deploy_lock() {
  flock -n 9 && return 0
  echo "a deploy holds $state_dir/lock ($(holder_origin)); waiting up to ${lock_wait}s"
  flock -w "$lock_wait" 9
}

# record_holder: a deploy that finds the lock held says what holds it (the
# shim's holder record: origin=, since=, pid=, closure=); removed on exit.
record_holder() {
  printf 'origin=%s\nsince=%s\npid=%s\nclosure=%s\n' \
    "weekly store clean-up (blog-gc.service)" "$(date +%s)" "$$" "-" >"$state_dir/holder.gc"
  mv -f "$state_dir/holder.gc" "$state_dir/holder"
  trap 'rm -f "$state_dir/holder"' EXIT
}

# delete_generations: keeps the current generation and the KEEP-1 before it
# (and any newer one): the running system's rollback target survives.
delete_generations() {
  echo "deleting system generations older than the newest $keep"
  nix-env --profile "$profile" --delete-generations "+$keep"
}

# rewrite_boot_menu: the boot loader installed again from the system profile,
# the committed boot default (never /run/current-system, which may be a
# deploy's unconfirmed system), so that its menu lists the remaining
# generations only. Under switch.lock, like every switch the deploy starts.
rewrite_boot_menu() {
  local system
  system=$(readlink -e "$profile") || {
    echo "$profile does not resolve to a system" >&2
    return 1
  }
  [[ $system == /nix/store/* && -x $system/bin/switch-to-configuration ]] || {
    echo "$profile resolves to $system, which is not a NixOS system" >&2
    return 1
  }
  echo "rewriting the boot menu from the system profile: $system"
  flock -w 600 "$state_dir/switch.lock" "$system/bin/switch-to-configuration" boot
}

collect_garbage() {
  echo "collecting store paths no generation or running system references"
  nix-collect-garbage
}

main() {
  check_input
  open_deploy_lock
  if ! take_deploy_lock; then
    echo "skipped: a deploy still holds $state_dir/lock after ${lock_wait}s ($(holder_origin)); nothing was deleted; the next run of the timer tries again"
    exit 0
  fi
  record_holder
  if [[ -e $profile ]]; then
    delete_generations
    rewrite_boot_menu
  else
    echo "no system profile at $profile: no generations to delete, no boot menu to rewrite"
  fi
  collect_garbage
}

main "$@"
