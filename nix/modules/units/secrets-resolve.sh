# shellcheck shell=bash
# blog-secrets-resolve.service (secrets-resolve.nix): at boot, before any
# service reads a credential, a delivery of secrets that a reboot left
# undecided follows the deploy's rule (scripts/target-shim.sh, secrets.sh
# "resolve"): kept if its deploy had committed and its system runs, else the
# set from before it comes back. Only a delivery of an earlier boot: one of
# this boot belongs to a deploy that is running, which decides it itself.
# Environment: SECRETS_STORE (the sets and the pending record), SECRETS_LINK.
root=${SECRETS_STORE:?}
link=${SECRETS_LINK:?}
pending=$root/pending
if [ ! -f "$pending" ]; then
  echo "no delivery of secrets is pending"
  exit 0
fi
field() { sed -n "s/^$1=//p" "$pending"; }
boot=$(cat /proc/sys/kernel/random/boot_id)
if [ "$(field boot_id)" = "$boot" ]; then
  echo "the pending delivery of secrets is this boot's: the deploy that made it decides it; left alone"
  exit 0
fi
previous=$(field previous)
if [ "$(field committed)" = yes ] && [ "$(readlink -f /run/current-system)" = "$(field new)" ]; then
  echo "the delivery was committed and its system runs: its secrets stay"
  [ "$previous" = - ] || [ -z "$previous" ] || rm -rf "${root:?}/$previous"
else
  echo "the delivery was never committed: the secrets from before it are back"
  if [ "$previous" = - ] || [ -z "$previous" ]; then
    rm -f "$link"
  else
    ln -sfn "${root##*/}/$previous" "$link.new"
    mv -fT "$link.new" "$link"
  fi
  delivered=$(field set)
  [ -z "$delivered" ] || rm -rf "${root:?}/$delivered"
fi
rm -f "$pending"
sync -f "$root"
