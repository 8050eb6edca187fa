#!/usr/bin/env bash
# Installs NixOS on a fresh server with the flake's pinned nixos-anywhere,
# giving it the pinned SSH host key, then checks that the installed system
# presents exactly that key. Run once per server; deploy.sh does the rest.
# Every connection is strict against a key known before it: the server before
# the install (the stock image, then nixos-anywhere's kexec installer, which
# keeps the image's host keys) against BOOTSTRAP_HOST_KEY, nixos-anywhere's own
# connections included (an ssh first on its PATH puts the checking options
# before its StrictHostKeyChecking=no); the installed system against HOST_KEY.
# A server that presents another key gets nothing, the host's private key
# least of all.
#
# Input (environment; secrets only here, never arguments): TARGET_HOST,
# TARGET_PORT, TARGET_USER, HOST_KEY, HOST_KEY_PRIVATE, BOOTSTRAP_HOST_KEY,
# FLAKE, NIXOS_CONFIGURATION, SSH_PRIVATE_KEY, BOOTSTRAP_SSH_PRIVATE_KEY,
# CONNECT_ATTEMPTS, CONNECT_TIMEOUT, INSTALL_TIMEOUT (10800 s: nixos-anywhere
# as a whole), NIXOS_ANYWHERE, SSH_PROXY_JUMP, HIDE_ADDRESSES.
# BOOTSTRAP_SSH_PRIVATE_KEY is the key the stock image (and so the installer)
# accepts; SSH_PRIVATE_KEY the one the installed system accepts (one of its
# admin keys). Unset, either falls back to SSH_PRIVATE_KEY, then ssh-agent.
# Exit codes: 0 installed and verified, 1 bad input, 2 refused before
# changing the target (unreachable, or it presents another host key than
# BOOTSTRAP_HOST_KEY; the disk the install erases is an attached Hetzner
# Volume, or a volume is attached and that disk cannot be told), 4
# nixos-anywhere failed, or installed but not verified (the system did not come
# back, or presents another host key): an operator must look.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib/common.sh
source "$script_dir/lib/common.sh"

work_dir=""
# The name the bootstrap host key is filed under in its known_hosts file.
readonly BOOTSTRAP_ALIAS=blog-bootstrap
identity_opts=()
bootstrap_identity_opts=()
nixos_anywhere=()

parse_inputs() {
  begin_input_checks
  require_set TARGET_HOST
  require_set HOST_KEY
  require_set HOST_KEY_PRIVATE
  has_value BOOTSTRAP_HOST_KEY ||
    bad_input "BOOTSTRAP_HOST_KEY is not set; it is required: the host key the server presents before the install (a Hetzner server's, from its user data; a machine of yours: its current key, read out of band), which every connection before the install checks"
  TARGET_PORT=${TARGET_PORT:-22}
  TARGET_USER=${TARGET_USER:-root}
  FLAKE=${FLAKE:-./nix}
  NIXOS_CONFIGURATION=${NIXOS_CONFIGURATION:-blog}
  CONNECT_ATTEMPTS=${CONNECT_ATTEMPTS:-30}
  CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-600}
  INSTALL_TIMEOUT=${INSTALL_TIMEOUT:-10800}
  BUILD_ON=${BUILD_ON:-auto}
  require_uint TARGET_PORT 1
  require_uint CONNECT_ATTEMPTS 1
  require_uint CONNECT_TIMEOUT 1
  require_uint INSTALL_TIMEOUT 60
  [[ -z ${HOST_KEY:-} ]] || require_host_key HOST_KEY
  [[ -z ${BOOTSTRAP_HOST_KEY:-} ]] || require_host_key BOOTSTRAP_HOST_KEY
  check_proxy_jump
  [[ -z ${HOST_KEY:-} || $HOST_KEY == ssh-ed25519\ * ]] ||
    bad_input "HOST_KEY='$(shown "$HOST_KEY")' is not valid; expected an ed25519 key ('ssh-ed25519 AAAA...')"
  [[ $BUILD_ON =~ ^(auto|local|remote)$ ]] ||
    bad_input "BUILD_ON='$(shown "$BUILD_ON")' is not valid; expected auto, local or remote"
  parse_published_addresses
  end_input_checks
  if [[ -n ${NIXOS_ANYWHERE:-} ]]; then
    nixos_anywhere=("$NIXOS_ANYWHERE")
  else
    nixos_anywhere=(nix --extra-experimental-features 'nix-command flakes' run "$FLAKE#nixos-anywhere" --)
  fi
}

cleanup() {
  local status=$?
  [[ -z $work_dir ]] || rm -rf "$work_dir"
  exit "$status"
}

# The tree nixos-anywhere copies onto the installed system with --extra-files:
# etc/ssh/ssh_host_ed25519_key (0600) and its .pub. Directories stay 0755
# (they are copied with their modes onto /etc).
prepare_extra_files() {
  local ssh_dir=$work_dir/extra-files/etc/ssh derived
  mkdir -p "$ssh_dir"
  chmod 755 "$work_dir/extra-files" "$work_dir/extra-files/etc" "$ssh_dir"
  write_secret_file "$ssh_dir/ssh_host_ed25519_key" HOST_KEY_PRIVATE
  printf '%s\n' "$HOST_KEY" >"$ssh_dir/ssh_host_ed25519_key.pub"
  chmod 644 "$ssh_dir/ssh_host_ed25519_key.pub"
  derived=$(ssh-keygen -y -f "$ssh_dir/ssh_host_ed25519_key" 2>/dev/null) ||
    abort "$EXIT_BAD_INPUT" "HOST_KEY_PRIVATE is not valid; expected an unencrypted OpenSSH private key (value not shown)"
  [[ $(key_blob "$derived") == "$(key_blob "$HOST_KEY")" ]] ||
    abort "$EXIT_BAD_INPUT" "HOST_KEY_PRIVATE does not belong to HOST_KEY ($(fingerprint "$HOST_KEY")); expected the matching private key (value not shown)"
}

prepare_work_dir() {
  make_work_dir
  identity_options identity_opts SSH_PRIVATE_KEY "$work_dir/id_admin"
  identity_options bootstrap_identity_opts BOOTSTRAP_SSH_PRIVATE_KEY "$work_dir/id_bootstrap"
  ((${#bootstrap_identity_opts[@]} > 0)) || bootstrap_identity_opts=("${identity_opts[@]}")
  printf '%s %s\n' "$BOOTSTRAP_ALIAS" "$BOOTSTRAP_HOST_KEY" >"$work_dir/known_hosts.bootstrap"
  write_ssh_wrapper "$work_dir/bin"
  prepare_extra_files
}

# bootstrap_ssh_options ARRAY: the options of every connection before the
# install: the deploy's (no ssh_config), strict against BOOTSTRAP_HOST_KEY only,
# and only its algorithms offered: the installer may also present a key of
# another type it made itself (NixOS' sshd makes an RSA key at boot).
bootstrap_ssh_options() {
  local -n bootstrap_ref=$1
  local algorithms
  case ${BOOTSTRAP_HOST_KEY%% *} in
  ssh-rsa) algorithms=rsa-sha2-512,rsa-sha2-256 ;;
  *) algorithms=${BOOTSTRAP_HOST_KEY%% *} ;;
  esac
  deploy_ssh_options bootstrap_ref
  # shellcheck disable=SC2034 # a nameref: this sets the caller's array
  bootstrap_ref+=(
    -o BatchMode=yes
    -o HostKeyAlgorithms="$algorithms"
    -o HostKeyAlias="$BOOTSTRAP_ALIAS"
    -o StrictHostKeyChecking=yes
    -o UserKnownHostsFile="$work_dir/known_hosts.bootstrap"
    -o GlobalKnownHostsFile=/dev/null
    -o LogLevel=ERROR
  )
}

# write_ssh_wrapper DIR: DIR/ssh, the ssh nixos-anywhere runs (DIR goes first on
# its PATH): the real ssh with bootstrap_ssh_options before whatever it is
# given. nixos-anywhere 1.13.0 (src/nixos-anywhere.sh) starts every ssh,
# ssh-copy-id and nix copy/build with sshArgs=(-o IdentitiesOnly=yes -i ...
# -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no); ssh takes an
# option's first value, so ours win, and no --ssh-option could (they come
# after its own). Its package puts its own openssh last on PATH
# (src/default.nix: --suffix PATH), and Nix runs "ssh" from PATH too.
write_ssh_wrapper() {
  local dir=$1 real_ssh options=()
  real_ssh=$(command -v ssh) || abort "$EXIT_BAD_INPUT" "ssh is not on PATH"
  bootstrap_ssh_options options
  mkdir -m 700 "$dir"
  {
    printf '#!%s\n' "$BASH"
    printf '# ssh for nixos-anywhere (scripts/install.sh): strict against the bootstrap host key, whatever follows.\n'
    printf 'exec %q' "$real_ssh"
    printf ' %q' "${options[@]}"
    printf ' "$@"\n'
  } >"$dir/ssh"
  chmod 700 "$dir/ssh"
}

# The server before the install presents BOOTSTRAP_HOST_KEY, nothing else
# is accepted: a server that presents another key after CONNECT_ATTEMPTS /
# CONNECT_TIMEOUT (cloud-init may still be writing it) is refused, with
# nothing sent to it.
first_contact_opts=()
wait_for_server() {
  step "Waiting for SSH on $(target_address) port $TARGET_PORT (before the install: pinned bootstrap host key $(fingerprint "$BOOTSTRAP_HOST_KEY"))"
  bootstrap_ssh_options first_contact_opts
  first_contact_opts+=(-p "$TARGET_PORT" "${bootstrap_identity_opts[@]}")
  local status=0
  ssh_wait_retry_mismatch=1
  wait_for_ssh "waiting for the server" "${first_contact_opts[@]}" "$(target_address)" true || status=$?
  ssh_wait_retry_mismatch=0
  if ((status == 10)); then
    abort "$EXIT_REFUSED" "host key mismatch before the install: $(target_address) port $TARGET_PORT does not present the pinned BOOTSTRAP_HOST_KEY (expected $(fingerprint "$BOOTSTRAP_HOST_KEY"); it presents: $(presented_keys "$TARGET_HOST" "$TARGET_PORT")); nothing was sent to it"
  fi
}

# on_stock_image COMMAND: runs COMMAND (sh) on the server as it is before the
# install, bounded.
on_stock_image() {
  timeout 60 ssh "${first_contact_opts[@]}" -o ConnectTimeout=10 "$(target_address)" "$1"
}

# disko erases the disk config.disko.devices.disk.main.device names. The stack
# attaches the data volume only after the install, so no volume should be
# there; if one is (attached by hand, or a reinstall), the install goes on only
# when that disk is known, and is not the volume: /dev/sdX follows probe
# order, and a volume can take /dev/sda (nix/modules/disk.nix). Evaluated only
# then (nix eval, no build). The name is resolved on the stock image: by-path
# and by-id names follow the hardware and stay the same under the installer's
# kernel, a /dev/sdX name may not, so a /dev/sdX name is refused whenever a
# volume is attached.
check_install_disk() {
  local volumes attr disk resolved volume device
  step "Checking for Hetzner Volumes on $(target_address) before anything is erased"
  # shellcheck disable=SC2016 # expanded on the server
  volumes=$(on_stock_image 'for v in /dev/disk/by-id/scsi-0HC_Volume_*; do [ -e "$v" ] && printf "%s %s\n" "$v" "$(readlink -f "$v")"; done; true') ||
    abort "$EXIT_REFUSED" "could not list the volumes on $(target_address) (exit $?); nothing was changed"
  if [[ -z $volumes ]]; then
    info "no volume attached"
    return 0
  fi
  # What the server answers is data: "<by-id link> <device>" lines, nothing else.
  while read -r volume device; do
    [[ $volume =~ ^/dev/disk/by-id/scsi-0HC_Volume_[0123456789]{1,20}$ && $device =~ $device_path_re ]] ||
      abort "$EXIT_REFUSED" "$(target_address) listed its volumes as '$(shown "$volume $device")'; expected '<by-id link> <device path>' lines; nothing was changed"
  done <<<"$volumes"
  info "attached: $(tr '\n' ' ' <<<"$volumes")"
  attr="$FLAKE#nixosConfigurations.\"$NIXOS_CONFIGURATION\".config.disko.devices.disk.main.device"
  disk=$(timeout 600 nix --extra-experimental-features 'nix-command flakes' eval --raw "$attr" 2>"$work_dir/disk.err") ||
    abort "$EXIT_REFUSED" "a Hetzner Volume is attached to the server and the disk the install erases cannot be told: nix eval $attr failed: $(tail -n 1 "$work_dir/disk.err"); detach the volume and run the install again (the stack attaches it after the install); nothing was changed"
  [[ $disk =~ $device_path_re ]] ||
    abort "$EXIT_REFUSED" "a Hetzner Volume is attached to the server and the disk the install erases, '$(shown "$disk")', is not a device path; detach the volume and run the install again; nothing was changed"
  # Only a stable name can be told apart from the volume under the installer's kernel.
  [[ ! $disk =~ ^/dev/(sd|vd|xvd)[a-z]+$ ]] ||
    abort "$EXIT_REFUSED" "a Hetzner Volume is attached to the server and the disk the install erases is named $disk, which follows the probe order: under the installer's kernel it may be the volume; detach the volume and run the install again (the stack attaches it after the install), or name the server's own disk by a stable path in blog.host.disk; nothing was changed"
  resolved=$(on_stock_image "readlink -f -- $disk || true") ||
    abort "$EXIT_REFUSED" "could not resolve $disk on $(target_address) (exit $?); nothing was changed"
  [[ -z $resolved || $resolved =~ $device_path_re ]] ||
    abort "$EXIT_REFUSED" "$(target_address) resolved $disk to '$(shown "$resolved")'; expected a device path; nothing was changed"
  while read -r volume device; do
    if [[ -n $resolved && $device == "$resolved" ]]; then
      abort "$EXIT_REFUSED" "refused: the disk the install erases, $disk, is $resolved on $(target_address), which is the Hetzner Volume $volume (a data volume); detach it and run the install again (the stack attaches it after the install), or name the server's own disk in blog.host.disk; nothing was changed"
    fi
  done <<<"$volumes"
  info "the install erases $disk (${resolved:-not on the stock image}), no attached volume"
}

run_nixos_anywhere() {
  step "Installing $FLAKE#$NIXOS_CONFIGURATION with nixos-anywhere"
  local args=(
    --flake "$FLAKE#$NIXOS_CONFIGURATION"
    --target-host "$(target_address)"
    --ssh-port "$TARGET_PORT"
    --extra-files "$work_dir/extra-files"
    # Where the system is built (nixos-anywhere 1.13.0, docs/cli.md and
    # checkBuildLocally in src/nixos-anywhere.sh): "auto" builds here when this
    # machine (or a builder it has) can build for the target's system, and on
    # the target otherwise: an aarch64 (cax) host from an x86 laptop or runner.
    --build-on "$BUILD_ON"
  )
  if has_value BOOTSTRAP_SSH_PRIVATE_KEY; then
    args+=(-i "$work_dir/id_bootstrap")
  elif has_value SSH_PRIVATE_KEY; then
    args+=(-i "$work_dir/id_admin")
  fi
  # Substitution on the destination stays on (no --no-substitute-on-destination).
  # The secrets are files by now; nixos-anywhere does not get them as variables.
  # Its own temporary directory (where it copies the login key: uploadSshKey in
  # src/nixos-anywhere.sh 1.13.0) goes into ours, on the tmpfs a later run sweeps.
  # Its ssh is the wrapper (write_ssh_wrapper): strict against the bootstrap key.
  # Bounded as a whole: it waits for the installer without a bound of its own.
  mkdir -m 700 "$work_dir/tmp"
  local status=0
  progress_start "nixos-anywhere"
  env -u HOST_KEY_PRIVATE -u SSH_PRIVATE_KEY -u BOOTSTRAP_SSH_PRIVATE_KEY TMPDIR="$work_dir/tmp" PATH="$work_dir/bin:$PATH" \
    timeout --kill-after=30 "$INSTALL_TIMEOUT" "${nixos_anywhere[@]}" "${args[@]}" || status=$?
  progress_stop
  case $status in
  0) ;;
  124 | 137) abort "$EXIT_UNKNOWN" "nixos-anywhere did not finish within INSTALL_TIMEOUT=${INSTALL_TIMEOUT}s; the server may be partly installed; an operator must look" ;;
  *) abort "$EXIT_UNKNOWN" "nixos-anywhere failed (exit $status); the server may be partly installed (a server that presented another host key than BOOTSTRAP_HOST_KEY got nothing: see 'Host key verification failed' above); an operator must look" ;;
  esac
}

# Polls the presented ed25519 host key until it is the pinned one, within
# CONNECT_ATTEMPTS / CONNECT_TIMEOUT (the installer may still answer with its
# own key for a moment while the new system boots).
wait_for_pinned_key() {
  step "Waiting for the installed system to present the pinned host key $(fingerprint "$HOST_KEY")"
  local attempt=1 deadline=$((SECONDS + CONNECT_TIMEOUT)) remaining seen="" presented
  while :; do
    remaining=$((deadline - SECONDS))
    presented=$(ssh-keyscan -T "$((remaining < 10 ? (remaining > 0 ? remaining : 1) : 10))" \
      -p "$TARGET_PORT" -t ed25519 "$TARGET_HOST" 2>/dev/null | awk '$2 == "ssh-ed25519" {print $2, $3; exit}') || true
    # The server's answer is data: a key type and base64, nothing else.
    if [[ -n $presented && ! $presented =~ ^ssh-ed25519\ [ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/]+={0,2}$ ]]; then
      info "attempt $attempt/$CONNECT_ATTEMPTS: the server answers with '$(shown "$presented")', which is not a key"
      presented=""
    elif [[ -n $presented ]]; then
      if [[ $presented == "$(key_blob "$HOST_KEY")" ]]; then
        info "the server presents the pinned key"
        return 0
      fi
      seen=$presented
      info "attempt $attempt/$CONNECT_ATTEMPTS: the server presents $(fingerprint "$seen"), not the pinned key"
    fi
    [[ -n $presented ]] || info "attempt $attempt/$CONNECT_ATTEMPTS: no key presented yet"
    if ((attempt >= CONNECT_ATTEMPTS || SECONDS >= deadline)); then
      if [[ -n $seen ]]; then
        abort "$EXIT_UNKNOWN" "host key mismatch after install: $(target_address) port $TARGET_PORT presents $(fingerprint "$seen"), expected the pinned HOST_KEY $(fingerprint "$HOST_KEY"); an operator must look"
      fi
      abort "$EXIT_UNKNOWN" "the installed system did not come back: no SSH answer from $(target_address) port $TARGET_PORT after $attempt attempts (CONNECT_ATTEMPTS=$CONNECT_ATTEMPTS, CONNECT_TIMEOUT=$CONNECT_TIMEOUT)"
    fi
    remaining=$((deadline - SECONDS))
    sleep $((remaining < 5 ? (remaining > 0 ? remaining : 0) : 5))
    attempt=$((attempt + 1))
  done
}

# A real login with StrictHostKeyChecking=yes against the pinned key only.
pinned_opts=()
verify_login() {
  step "Logging in with the pinned host key only"
  write_known_hosts "$work_dir/known_hosts" "$HOST_KEY"
  pinned_ssh_options pinned_opts "$work_dir/known_hosts"
  ssh "${pinned_opts[@]}" -o ConnectTimeout=10 "${identity_opts[@]}" "$(target_address)" true ||
    abort "$EXIT_UNKNOWN" "login with the pinned host key $(fingerprint "$HOST_KEY") failed; an operator must look"
}

# Every published address (A and AAAA) answers SSH with the pinned key: the
# installed system's own network configuration holds on both families.
# Bounded by CONNECT_ATTEMPTS/CONNECT_TIMEOUT for each address (IPv6 may come
# up a little after IPv4: it is configured from the metadata service).
verify_addresses() {
  local address attempt deadline remaining err_file=$work_dir/address.err
  for address in "${published_addresses[@]}"; do
    step "Checking that the installed system answers at $address ($(family "$address"))"
    attempt=1
    deadline=$((SECONDS + CONNECT_TIMEOUT))
    while :; do
      remaining=$((deadline - SECONDS))
      if timeout 40 ssh "${pinned_opts[@]}" -o ConnectTimeout="$((remaining < 10 ? (remaining > 0 ? remaining : 1) : 10))" \
        "${identity_opts[@]}" "$TARGET_USER@$address" true 2>"$err_file"; then
        info "it answers at $address with the pinned host key"
        break
      fi
      if grep -qiE 'host key verification failed|identification has changed' "$err_file"; then
        abort "$EXIT_UNKNOWN" "installed, but $address ($(family "$address")) port $TARGET_PORT presents a host key other than the pinned HOST_KEY $(fingerprint "$HOST_KEY"): another machine has that address; an operator must look"
      fi
      if ((attempt >= CONNECT_ATTEMPTS || SECONDS >= deadline)); then
        abort "$EXIT_UNKNOWN" "installed, but the server does not answer at $address ($(family "$address")) port $TARGET_PORT after $attempt attempts (last error: $(shown "$(tail -n 1 "$err_file")")); visitors and Let's Encrypt that use that address cannot reach it; an operator must look"
      fi
      info "attempt $attempt/$CONNECT_ATTEMPTS at $address failed ($(shown "$(tail -n 1 "$err_file")")); retrying"
      remaining=$((deadline - SECONDS))
      sleep $((remaining < 3 ? (remaining > 0 ? remaining : 0) : 3))
      attempt=$((attempt + 1))
    done
  done
}

main() {
  parse_args "${BASH_SOURCE[0]}" "$@"
  parse_inputs
  hide_addresses
  install_exit_traps cleanup
  prepare_work_dir
  wait_for_server
  check_install_disk
  run_nixos_anywhere
  wait_for_pinned_key
  verify_login
  verify_addresses
  step "Installed: $(target_address) runs $FLAKE#$NIXOS_CONFIGURATION and presents the pinned host key${published_addresses[*]:+ at ${published_addresses[*]}}"
}

main "$@"
