# shellcheck shell=bash
# hetzner-ipv6.service (nix/modules/network.nix): the uplink's IPv6 address and
# default route from the Hetzner Cloud metadata service, given to
# systemd-networkd as a runtime drop-in of the uplink's .network file, without
# resetting the link that carries the SSH sessions.
#
# Environment: METADATA_URL, UPLINK (interface), UPLINK_NETWORK (the .network
# unit's name), WAIT_ONLINE (systemd-networkd-wait-online).
#
# systemd-networkd applies a changed .network file (a new drop-in is one) only
# by reconfiguring every link it matches: `networkctl reload` "If a new,
# modified or removed .network file is found, then all interfaces which match
# the file are reconfigured" (networkctl(1), systemd 252), and a reconfiguration
# stops the link's DHCP client and drops the configuration it no longer finds
# (systemd src/network/networkd-link.c, link_reconfigure_impl(Link *, bool
# force), the version read: link_stop_engines, then link_drop_foreign_config;
# newer versions, with LinkReconfigurationFlag, keep what they can on a reload
# but still reconfigure the link). So:
#   - at boot, this unit runs before sshd.service starts (network.nix orders it
#     so): nobody is connected yet, and `networkctl reload` hands the drop-in to
#     networkd, which then owns the address and route (they survive its own
#     restarts and later reconfigurations);
#   - once sshd runs (a retry of this unit after a failed boot run, or a deploy's
#     activation starting it again after it failed), the address and route are
#     added with `ip ... replace`, which touches nothing else on the link;
#     networkd reads the drop-in at its next reload or restart and keeps them
#     from then on.
# Run again, it changes nothing: the drop-in is rewritten only when its content
# changes, `ip ... replace` is idempotent.
set -euo pipefail

readonly metadata=${METADATA_URL:?}
readonly uplink=${UPLINK:?}
readonly dropin_dir=/run/systemd/network/${UPLINK_NETWORK:?}.network.d
readonly dropin=$dropin_dir/hetzner-ipv6.conf
address=""
gateway=""

# read_metadata: address (<ipv6>/<prefix length>) and gateway from the metadata
# service's network-config (the cloud-init v1 document: a "physical" entry
# whose "static" subnet with ipv6: true carries them). Everything it sends is
# checked for its exact form before use.
read_metadata() {
  local config subnet
  config=$(curl --silent --show-error --fail --max-time 10 --retry 6 --retry-connrefused "$metadata")
  subnet='.config[] | select(.type == "physical") | .subnets[] | select(.ipv6 == true)'
  address=$(yq "$subnet | .address" <<<"$config" | head -n 1)
  gateway=$(yq "$subnet | .gateway // \"fe80::1\"" <<<"$config" | head -n 1)
  if [[ ! $address =~ ^[0-9A-Fa-f:]{2,39}/[0-9]{1,3}$ ]]; then
    echo "no IPv6 address in the metadata's network-config (expected <ipv6>/<prefix length>): $(head -c 2000 <<<"$config" | tr -c '[:print:]\n' '?')" >&2
    exit 1
  fi
  if [[ ! $gateway =~ ^[0-9A-Fa-f:]{2,39}$ ]]; then
    echo "the metadata's IPv6 gateway '$(tr -c '[:print:]' '?' <<<"$gateway")' is not an IPv6 address" >&2
    exit 1
  fi
}

# write_dropin: prints "changed" when the drop-in's content changed.
write_dropin() {
  local content
  content=$(printf '[Network]\nAddress=%s\n\n[Route]\nGateway=%s\nGatewayOnLink=yes\n' "$address" "$gateway")
  if [[ -f $dropin && $(<"$dropin") == "$content" ]]; then
    return 0
  fi
  mkdir -p "$dropin_dir"
  printf '%s\n' "$content" >"$dropin.tmp"
  mv -f "$dropin.tmp" "$dropin"
  echo changed
}

# apply: see the header.
apply() {
  local changed=$1
  if ! systemctl is-active --quiet sshd.service; then
    [[ -n $changed ]] || return 0
    echo "sshd does not run yet: networkd reloads its configuration and reconfigures $uplink with the drop-in"
    networkctl reload
    sleep 1
    # Bounded: the link is configured again once DHCP has answered.
    "${WAIT_ONLINE:?}" --interface="$uplink" --timeout=60 || true
  else
    echo "sshd runs: adding the address and route to $uplink without reconfiguring it"
    ip -6 address replace "$address" dev "$uplink"
    ip -6 route replace default via "$gateway" dev "$uplink" onlink
  fi
}

# check: the uplink has a global IPv6 address and an IPv6 default route.
check() {
  local tries=30
  until [[ -n $(ip -6 -o address show dev "$uplink" scope global) && -n $(ip -6 route show default dev "$uplink") ]]; do
    ((--tries > 0)) || {
      echo "$uplink has no global IPv6 address or no IPv6 default route after 30s" >&2
      exit 1
    }
    sleep 1
  done
}

main() {
  read_metadata
  apply "$(write_dropin)"
  check
  echo "IPv6: $address via $gateway on $uplink"
}

main "$@"
