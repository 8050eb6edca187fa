#!/usr/bin/env bash
# Stand-in for nixos-anywhere in the install tests (the real one needs
# nixpkgs and a machine to kexec). It does the part install.sh relies on:
# copies the --extra-files tree onto the target over SSH and restarts the
# target's sshd so it presents the host key from that tree.
#   FAKE_NA_LOG        file that receives the arguments (one a line) and
#                      whether a secret variable reached this process
#   FAKE_NA_SSHD_PID   pid of the target's sshd (signalled with SIGHUP)
#   FAKE_NA_OTHER_KEY  if set: install a freshly generated key instead, as if
#                      the system came back with another host key
set -euo pipefail

target_host="" port=22 identity="" extra_files=""

parse_args() {
  printf '%s\n' "$@" >"$FAKE_NA_LOG"
  if [[ -n ${HOST_KEY_PRIVATE:-} || -n ${SSH_PRIVATE_KEY:-} ]]; then
    echo "SECRET-IN-ENVIRONMENT" >>"$FAKE_NA_LOG"
  fi
  while (($# > 0)); do
    case $1 in
    --target-host) target_host=$2 && shift ;;
    --ssh-port) port=$2 && shift ;;
    -i) identity=$2 && shift ;;
    --extra-files) extra_files=$2 && shift ;;
    --build-on)
      [[ $2 =~ ^(auto|local|remote)$ ]] || { echo "fake-nixos-anywhere: --build-on $2 is not auto, local or remote (as nixos-anywhere 1.13.0 refuses it)" >&2 && exit 1; }
      shift
      ;;
    --flake) shift ;;
    *) echo "fake-nixos-anywhere: unexpected argument $1" >&2 && exit 1 ;;
    esac
    shift
  done
}

maybe_replace_key() {
  if [[ -n ${FAKE_NA_OTHER_KEY:-} ]]; then
    local other
    other=$(mktemp -d)
    ssh-keygen -q -t ed25519 -N '' -f "$other/k"
    cp "$other/k" "$extra_files/etc/ssh/ssh_host_ed25519_key"
    cp "$other/k.pub" "$extra_files/etc/ssh/ssh_host_ed25519_key.pub"
    rm -rf "$other"
  fi
}

install_files() {
  local ssh_opts=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o LogLevel=ERROR -o ConnectTimeout=10 -p "$port")
  [[ -z $identity ]] || ssh_opts+=(-i "$identity")
  # Files only (no directory entries), and only onto a test target.
  (cd "$extra_files" && find . -type f | tar -cf - --no-recursion -T -) |
    timeout 60 ssh "${ssh_opts[@]}" "$target_host" \
      "test -e /etc/blog-test/target && tar -C / -xf - --no-same-owner && systemctl reload ssh.service"
}

main() {
  parse_args "$@"
  maybe_replace_key
  install_files
  echo "fake-nixos-anywhere: installed (stand-in, no NixOS here)"
}

main "$@"
