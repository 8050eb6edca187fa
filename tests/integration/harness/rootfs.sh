#!/usr/bin/env bash
# The root file system the test targets boot (target.sh): Debian bookworm,
# minbase, with systemd as init and what the targets need, built once per
# machine with mmdebstrap from the Debian mirror apt uses, and cached outside
# the repository like the Pulumi engine:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/blog-test-rootfs/<key>/root   the tree (read-only to
#                                                                 the targets: each boots
#                                                                 an overlay of it)
#   ${XDG_CACHE_HOME:-$HOME/.cache}/blog-test-rootfs/<key>/info   packages, build time
#
# <key> is a hash of the package list, this script and the files it bakes in
# (rootfs/), so a change of any of them builds a new tree. A build runs under a
# lock, into a temporary directory that is renamed when complete: two runs at
# once never build it twice, nor see half of it.
#
#   rootfs.sh build    builds it unless it is there; prints its directory and, when it
#                      built, how long that took (scripts/setup.sh runs this)
#   rootfs.sh path     prints the tree's directory; fails, saying how to build it, when
#                      it is not there (the harness never builds it itself)
#   rootfs.sh key      prints the key
# Needs root, mmdebstrap, and the network to reach the Debian mirror (build only).
set -euo pipefail

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HARNESS_DIR
readonly SUITE=bookworm
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/blog-test-rootfs
readonly CACHE_ROOT
readonly BUILD_TIMEOUT=1800 # seconds mmdebstrap may take (30-40 s on a fast mirror)

# What a target runs: systemd as PID 1 (and dbus, which systemctl's clients
# use), sshd, its own Nix store's tools (nix-bin), python3 for the web unit
# (web-server.py), curl and jq (the deploy's target side), e2fsprogs and
# util-linux (the data volume: e2label, resize2fs, findmnt, losetup, blkid),
# restic (backups), tar and gzip (data-backup.sh), acl (getfacl for the
# backup tests), procps (ps, pkill), iproute2 (ip), ca-certificates.
readonly PACKAGES=(
  systemd systemd-sysv dbus openssh-server iproute2 procps nix-bin python3 curl jq
  e2fsprogs util-linux mount restic tar gzip acl ca-certificates
)

abort() {
  echo "rootfs.sh: $*" >&2
  exit 1
}

# cache_key: sha256 (first 16 hex digits) of the package list, this script
# and every file under rootfs/ (names and contents).
cache_key() {
  {
    printf '%s\n' "$SUITE" "${PACKAGES[@]}"
    cat "${BASH_SOURCE[0]}"
    (cd "$HARNESS_DIR/rootfs" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    (cd "$HARNESS_DIR/rootfs" && find . -type l -printf '%p -> %l\n' | sort)
  } | sha256sum | cut -c1-16
}

# debian_mirror: the URI apt uses for Debian's $SUITE main (one-line or
# deb822 sources), else deb.debian.org.
debian_mirror() {
  local file uri
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $file ]] || continue
    uri=$(awk -v s="$SUITE" '$1 == "deb" && $0 ~ "[[:space:]]" s "[[:space:]]" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$file")
    [[ -z $uri ]] || { echo "$uri"; return; }
  done
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -f $file ]] || continue
    # The paragraph whose Suites: lists $SUITE itself (not -security, -updates).
    uri=$(awk -v s="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
      { u = ""; ok = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, f, /[[:space:]]+/); u = f[2] }
          if ($i ~ /^Suites:/) { n = split($i, f, /[[:space:]]+/); for (j = 2; j <= n; j++) if (f[j] == s) ok = 1 }
        }
        if (ok && u != "") { print u; exit } }' "$file")
    [[ -z $uri ]] || { echo "$uri"; return; }
  done
  echo "http://deb.debian.org/debian"
}

# customize ROOT: mmdebstrap's customize hook (run after the packages are in).
customize() {
  local root=$1
  # The baked-in files (sshd's settings, Nix's, the boot unit, the stand-ins for
  # udev's part: the fstab generator's wrapper and udevadm), root's.
  tar -C "$HARNESS_DIR/rootfs" --owner=0 --group=0 -cf - . | tar -C "$root" -xf -
  systemctl --root="$root" enable blog-test-boot.service
  # NixOS boots multi-user.target (systemd.defaultUnit), not Debian's graphical.target.
  systemctl --root="$root" set-default multi-user.target
  # The file system check of a mount, without its device unit: there is no
  # udev inside, so no device units, and BindsTo=/After= on one fails the
  # check's start. The check itself runs as on a host; a device that is not
  # there fails its start job (AssertPathExists=), leaving it inactive as the
  # wait for the device would on a host (systemd-fstab-generator's wrapper
  # does the same for the mount).
  sed -e '/^BindsTo=%i\.device$/d' -e 's/%i\.device *//' -e '/^DefaultDependencies=no$/a AssertPathExists=%f' \
    "$root/lib/systemd/system/systemd-fsck@.service" >"$root/etc/systemd/system/systemd-fsck@.service"
  # No target may share another's identity: each writes its own host key
  # before it boots, and an empty machine-id makes systemd take the one
  # nspawn passes (or a transient one) at every boot.
  rm -f "$root"/etc/ssh/ssh_host_*
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  # Nothing a target needs, and each slows its boot or waits for a console.
  systemctl --root="$root" mask console-getty.service getty.target systemd-timesyncd.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer >/dev/null 2>&1 || true
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
}

cmd_build() {
  local key dir lock tmp start mirror
  command -v mmdebstrap >/dev/null || abort "mmdebstrap is not installed (apt-get install mmdebstrap; scripts/setup.sh does)"
  ((EUID == 0)) || abort "building the targets' root file system needs root"
  key=$(cache_key)
  dir=$CACHE_ROOT/$key
  mkdir -p "$CACHE_ROOT"
  exec {lock}>"$CACHE_ROOT/.lock"
  flock -w "$BUILD_TIMEOUT" "$lock" || abort "another build of the targets' root file system held $CACHE_ROOT/.lock for ${BUILD_TIMEOUT}s"
  if [[ -f $dir/info ]]; then
    echo "$dir/root"
    echo "the test targets' root file system is cached in $dir" >&2
    return
  fi
  rm -rf "$CACHE_ROOT"/*.partial
  tmp=$(mktemp -d "$CACHE_ROOT/$key.XXXXXX.partial")
  mirror=$(debian_mirror)
  start=$SECONDS
  echo "building the test targets' root file system ($SUITE minbase from $mirror) into $dir" >&2
  timeout "$BUILD_TIMEOUT" mmdebstrap --quiet --mode=root --variant=minbase --format=directory \
    --include="$(
      IFS=,
      echo "${PACKAGES[*]}"
    )" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook="bash '$HARNESS_DIR/rootfs.sh' customize \"\$1\"" \
    "$SUITE" "$tmp/root" "deb $mirror $SUITE main" >&2 ||
    {
      rm -rf "$tmp"
      abort "mmdebstrap failed (the Debian mirror $mirror must be reachable)"
    }
  {
    echo "key=$key"
    echo "suite=$SUITE"
    echo "mirror=$mirror"
    echo "packages=${PACKAGES[*]}"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "seconds=$((SECONDS - start))"
    echo "bytes=$(du -sb "$tmp/root" | cut -f1)"
  } >"$tmp/info"
  mv -T "$tmp" "$dir"
  echo "$dir/root"
  echo "built the test targets' root file system in $((SECONDS - start)) s ($(($(du -sb "$dir/root" | cut -f1) / 1048576)) MiB): $dir" >&2
}

cmd_path() {
  local dir
  dir=$CACHE_ROOT/$(cache_key)
  [[ -f $dir/info ]] ||
    abort "the test targets' root file system is not built ($dir is missing): run bash scripts/setup.sh, or bash tests/integration/harness/rootfs.sh build"
  echo "$dir/root"
}

main() {
  local verb=${1:-}
  shift || true
  case $verb in
  build) cmd_build ;;
  path) cmd_path ;;
  key) cache_key ;;
  customize) customize "$@" ;;
  *) abort "usage: rootfs.sh build|path|key" ;;
  esac
}

main "$@"
