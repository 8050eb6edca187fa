#!/usr/bin/env bash
# Stand-in for nixos-anywhere in the e2e suite (the real one needs nixpkgs and
# a machine to kexec). It leaves the target (a container booting systemd,
# tests/integration/harness/target.sh) as an install would: the flake's system
# in the system profile and the boot default, root's authorized keys those of
# the configuration (blog.host.adminSshKeys), the --extra-files tree (the
# pinned host key) under /; then, as nixos-anywhere's reboot phase, it reboots
# the machine into the installed system and returns (the supervisor of the
# target boots it again; install.sh waits for the pinned key).
# Each run appends its arguments, one line, to $BLOG_E2E_CLOUD_DIR/nixos-anywhere.log.
set -euo pipefail

flake_ref="" target="" port=22 identity="" extra_files=""
ssh_opts=()

abort() {
  echo "fake-nixos-anywhere: $*" >&2
  exit 1
}

parse_args() {
  echo "$*" >>"${BLOG_E2E_CLOUD_DIR:?}/nixos-anywhere.log"
  while (($# > 0)); do
    case $1 in
    --flake) flake_ref=$2 && shift ;;
    --target-host) target=$2 && shift ;;
    --ssh-port | -p) port=$2 && shift ;;
    -i) identity=$2 && shift ;;
    --extra-files) extra_files=$2 && shift ;;
    --build-on | --phases | --kexec) shift ;;
    --debug | --copy-host-keys | --no-substitute-on-destination | --generate-hardware-config) ;;
    *) abort "unexpected argument $1" ;;
    esac
    shift
  done
  [[ -n $flake_ref && -n $target && -n $extra_files ]] || abort "--flake, --target-host and --extra-files are required"
  ssh_opts=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o LogLevel=ERROR -o ConnectTimeout=10 -p "$port")
  [[ -z $identity ]] || ssh_opts+=(-o IdentitiesOnly=yes -i "$identity")
}

# The configuration's admin keys and system, as the real tool would build them.
evaluate() {
  local flake=${flake_ref%%#*} name=${flake_ref#*#} attr
  attr="$flake#nixosConfigurations.\"$name\".config"
  admin_keys=$(timeout 120 nix eval --json "$attr.blog.host.adminSshKeys" | jq -r '.[]')
  toplevel=$(timeout 300 nix build --no-link --json "$attr.system.build.toplevel" | jq -r '.[0].outputs.out')
}

# install_system: the system into the target's store, its profile and boot
# default; the extra files and the admins' keys staged, and put in place by a
# unit a second after this session ends, which stops sshd first and then
# reboots into the installed system (as nixos-anywhere's reboot phase): until
# the reboot nobody logs in with the new key or the new keys, as nobody can
# reach an installed system before it boots. Until then every connection
# goes to the machine as it was (the installer keeps the stock image's host
# key). Its ssh is whatever is first on PATH: install.sh's, strict against
# the bootstrap host key.
install_system() {
  NIX_SSHOPTS="${ssh_opts[*]}" timeout 300 nix copy --to "ssh://$target" "$toplevel"
  (cd "$extra_files" && find . -type f | tar -cf - --no-recursion -T -) |
    timeout 60 ssh "${ssh_opts[@]}" "$target" "test -e /etc/blog-test/target && rm -rf /run/blog-install && mkdir -m 700 /run/blog-install && mkdir -m 755 /run/blog-install/extra &&
      tar -C /run/blog-install/extra -xf - --no-same-owner"
  printf '%s\n' "$admin_keys" |
    timeout 60 ssh "${ssh_opts[@]}" "$target" "cat >/run/blog-install/authorized_keys &&
      nix-env -p /nix/var/nix/profiles/system --set $toplevel &&
      $toplevel/bin/switch-to-configuration boot &&
      systemd-run --quiet --on-active=1 --timer-property=AccuracySec=100ms /bin/sh -c 'systemctl stop ssh.service &&
        cp -a /run/blog-install/extra/. / && install -m 0644 /run/blog-install/authorized_keys /etc/ssh/authorized_keys.d/root &&
        systemctl reboot'"
}

main() {
  parse_args "$@"
  evaluate
  install_system
  echo "fake-nixos-anywhere: installed $toplevel on $target and rebooted it (stand-in: no kexec, no disko)"
}

main "$@"
