#!/usr/bin/env bash
# Sets up a machine to develop and test this project (the README's set-up
# command; .ci/run runs it too): Debian's packages the suites use, Node.js 22
# where the machine's is older, the npm packages, the root file system the
# test targets boot (built once per version of its package list and build
# script, cached outside the repository, see tests/integration/harness/rootfs.sh),
# and the Pulumi engine the e2e suite drives (built once per version, cached
# outside the repository, see scripts/build-engine.sh).
#
#   scripts/setup.sh              needs root for apt-get (or sudo); the rest runs as you
#   scripts/setup.sh --node-bin   prints the directory whose `node` is Node.js 22 (nothing
#                                 is installed); put it first on PATH, as .ci/run does
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_DIR

# Nix (offline builds, the target's store), OpenSSH (the real deploy target),
# ShellCheck (script lint), iproute2 (network namespaces for test hosts),
# openssl (the e2e suite's test CA), util-linux (unshare, nsenter, flock), git (the flake
# update's tests stand in for GitHub with local repositories), restic (the backups: the
# targets' and where pulumi runs), systemd-container (systemd-nspawn: the test targets
# boot systemd in containers) and mmdebstrap (their root file system, from Debian's archive).
readonly APT_PACKAGES=(nix-bin openssh-server openssh-client shellcheck curl jq python3 iproute2 util-linux openssl e2fsprogs strace git restic
  systemd-container mmdebstrap)

# versitygw, the S3 server the backup tests use (Apache-2.0; a real S3 gateway
# over a directory), built from the Go module proxy once per version.
readonly VERSITYGW_VERSION=v1.8.0
VERSITYGW_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/blog-versitygw/$VERSITYGW_VERSION
readonly VERSITYGW_CACHE

# Node.js 22 from the npm registry's node-linux-<arch> package, which carries the
# binary itself (package/bin/node): the one registry this project's machines reach.
readonly NODE_VERSION=22.23.5
readonly NODE_MAJOR=${NODE_VERSION%%.*}
NODE_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/blog-node/node-v$NODE_VERSION
readonly NODE_CACHE

step() { printf '\n== %s\n' "$*" >&2; }
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

# node_major: the major version of the `node` on PATH (0 if none).
node_major() {
  local version
  version=$(node --version 2>/dev/null) || {
    echo 0
    return
  }
  [[ $version =~ ^v([0-9]+)\. ]] || abort "node --version printed '$version'; expected vMAJOR.MINOR.PATCH"
  echo "${BASH_REMATCH[1]}"
}

# node_bin: the directory of a Node.js $NODE_MAJOR: the machine's own when it is
# that major, else the cached one (empty when it is not there yet).
node_bin() {
  if (($(node_major) == NODE_MAJOR)); then
    dirname "$(command -v node)"
  elif [[ -x $NODE_CACHE/bin/node ]]; then
    echo "$NODE_CACHE/bin"
  fi
}

# install_node: Node.js $NODE_VERSION into $NODE_CACHE, unless the machine's
# node is already $NODE_MAJOR.x. npm checks the package's integrity against the
# registry's; the binary is checked to run and to report its version.
install_node() {
  local bin arch work
  bin=$(node_bin)
  if [[ -n $bin ]]; then
    echo "Node.js $("$bin/node" --version) in $bin"
    return
  fi
  case $(uname -m) in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) abort "no Node.js $NODE_MAJOR for $(uname -m): install it yourself (https://nodejs.org)" ;;
  esac
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: the path is fixed
  trap "rm -rf '$work'" RETURN
  (cd "$work" && timeout 600 npm pack --silent "node-linux-$arch@$NODE_VERSION" >/dev/null) ||
    abort "could not fetch node-linux-$arch@$NODE_VERSION from the npm registry"
  tar -xzf "$work"/node-linux-"$arch"-*.tgz -C "$work" package/bin/node
  [[ $("$work/package/bin/node" --version) == "v$NODE_VERSION" ]] ||
    abort "node-linux-$arch@$NODE_VERSION does not run here or reports another version"
  mkdir -p "$NODE_CACHE.partial/bin"
  mv "$work/package/bin/node" "$NODE_CACHE.partial/bin/node"
  rm -rf "$NODE_CACHE"
  mv "$NODE_CACHE.partial" "$NODE_CACHE"
  echo "Node.js v$NODE_VERSION in $NODE_CACHE/bin"
}

# --ignore-scripts: @pulumi/command's install hook runs `pulumi plugin install`,
# a download this project never needs (the e2e suite uses its own plugins).
install_npm_packages() {
  (cd "$REPO_DIR" && timeout 900 npm ci --no-audit --no-fund --ignore-scripts)
}

build_engine() {
  bash "$REPO_DIR/scripts/build-engine.sh"
}

# install_versitygw: `go install` of versitygw $VERSITYGW_VERSION into
# $VERSITYGW_CACHE (about 6 minutes on 2 cores the first time; its go.mod has
# no replace directives). tests/integration/harness/backup-server.sh runs it.
install_versitygw() {
  if [[ -x $VERSITYGW_CACHE/versitygw ]]; then
    echo "versitygw $VERSITYGW_VERSION in $VERSITYGW_CACHE"
    return
  fi
  command -v go >/dev/null || abort "go is not on PATH: the backup tests' S3 server (versitygw) is built with it"
  rm -rf "$VERSITYGW_CACHE.partial"
  mkdir -p "$VERSITYGW_CACHE.partial"
  GOBIN=$VERSITYGW_CACHE.partial GOFLAGS=-mod=mod timeout 1800 go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" ||
    abort "building versitygw $VERSITYGW_VERSION failed"
  rm -rf "$VERSITYGW_CACHE"
  mv "$VERSITYGW_CACHE.partial" "$VERSITYGW_CACHE"
  echo "versitygw $VERSITYGW_VERSION in $VERSITYGW_CACHE"
}

# raise_inotify_limit: every test target's systemd holds about 7 inotify
# instances, and root's limit (fs.inotify.max_user_instances, 128 by default)
# counts every container of the machine: two suites at once hold about twenty
# targets. At least 1024 (until the next boot).
raise_inotify_limit() {
  local now
  now=$(sysctl -n fs.inotify.max_user_instances)
  if ((now < 1024)); then
    as_root sysctl -q -w fs.inotify.max_user_instances=1024
    echo "fs.inotify.max_user_instances: $now -> 1024"
  else
    echo "fs.inotify.max_user_instances: $now"
  fi
}

# build_target_rootfs: the test targets' root file system (tests/integration/
# harness/rootfs.sh): cached; a build prints how long it took.
build_target_rootfs() {
  as_root bash "$REPO_DIR/tests/integration/harness/rootfs.sh" build >/dev/null
}

main() {
  case ${1:-} in
  "" | --node-bin) ;;
  -h | --help)
    cat "$REPO_DIR/scripts/help/setup.txt"
    exit 0
    ;;
  *)
    echo "setup.sh: unknown argument '$1'; expected --node-bin or --help" >&2
    exit 1
    ;;
  esac
  if [[ ${1:-} == --node-bin ]]; then
    node_bin
    return
  fi
  step "Debian packages"
  install_debian_packages
  step "Node.js $NODE_MAJOR"
  install_node
  # Everything below, npm and the engine's version check included, runs on it.
  PATH=$(node_bin):$PATH
  step "npm packages"
  install_npm_packages
  step "The test targets' root file system"
  build_target_rootfs
  raise_inotify_limit
  step "Pulumi engine"
  build_engine
  step "S3 server for the backup tests"
  install_versitygw
}

main "$@"
