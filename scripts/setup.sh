#!/usr/bin/env bash
# Sets up a machine to develop and test this project (the README's set-up
# command; .ci/run runs it too): Debian's packages the suites use, the npm
# packages, and the Pulumi engine the e2e suite drives (built once per version,
# cached outside the repository, see scripts/build-engine.sh).
#
#   scripts/setup.sh     needs root for apt-get (or sudo); the rest runs as you
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_DIR

# Nix (offline builds, the target's store), OpenSSH (the real deploy target),
# ShellCheck (script lint), iproute2 (network namespaces for test hosts),
# openssl (the e2e suite's test CA), util-linux (unshare, nsenter, flock).
readonly APT_PACKAGES=(nix-bin openssh-server openssh-client shellcheck curl jq python3 iproute2 util-linux openssl e2fsprogs strace)

step() { printf '\n== %s\n' "$*"; }
abort() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    abort "installing Debian packages needs root: run as root, or install: ${APT_PACKAGES[*]}"
  fi
}

install_debian_packages() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    echo "all present: ${APT_PACKAGES[*]}"
    return
  fi
  echo "installing: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# --ignore-scripts: @pulumi/command's install hook runs `pulumi plugin install`,
# a download this project never needs (the e2e suite uses its own plugins).
install_npm_packages() {
  (cd "$REPO_DIR" && timeout 900 npm ci --no-audit --no-fund --ignore-scripts)
}

build_engine() {
  bash "$REPO_DIR/scripts/build-engine.sh"
}

main() {
  step "Debian packages"
  install_debian_packages
  step "npm packages"
  install_npm_packages
  step "Pulumi engine"
  build_engine
}

main "$@"
