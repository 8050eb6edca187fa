#!/usr/bin/env bash
# Builds the Pulumi engine the e2e suite runs, from the Go module proxy, into a
# cache outside the repository; does nothing when the cache already has it.
#
#   scripts/build-engine.sh          builds (or finds) the engine, prints its directory last
#   scripts/build-engine.sh --print  prints the directory without building (exit 1 if absent)
#
# The directory is an installation root as the Automation API expects it
# (`PulumiCommand.get({root})`): bin/pulumi and bin/pulumi-language-nodejs.
# What it builds, at the versions package-lock.json pins:
#   pulumi                  the CLI, github.com/pulumi/pulumi/pkg/v3/cmd/pulumi at the
#                           version of @pulumi/pulumi, stamped with that version
#   pulumi-language-nodejs  the Node.js language host. Its own module
#                           (github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3)
#                           is tried first; the proxy this project's machines reach
#                           refuses it at every version, so the fallback is the
#                           newest host the proxy does serve: the one inside
#                           github.com/pulumi/pulumi/sdk/v3 up to v3.68.0 (before it
#                           moved to a module of its own). It launches the program
#                           (node + @pulumi/pulumi's run script); the engine, the
#                           planning and the state are all the CLI's.
# The command provider (github.com/pulumi/pulumi-command/provider) is not built:
# the proxy refuses it at every version tried. The e2e suite runs a stand-in
# that follows its source (tests/e2e/providers/command.ts).
#
# Environment: BLOG_ENGINE_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/blog-pulumi-engine),
# GO (default: go on PATH, else /usr/local/go/bin/go).
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_DIR
readonly LEGACY_HOST_SDK=v3.68.0
readonly BUILD_TIMEOUT=2400 # seconds, each build

step() { printf '==> %s\n' "$*" >&2; }
abort() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# locked_version PACKAGE: the version package-lock.json pins.
locked_version() {
  node -e '
    const lock = require(process.argv[1]);
    const entry = lock.packages["node_modules/" + process.argv[2]];
    if (!entry) process.exit(1);
    console.log(entry.version);
  ' "$REPO_DIR/package-lock.json" "$1" || abort "package-lock.json pins no version of $1"
}

find_go() {
  if command -v "${GO:-go}" >/dev/null; then
    command -v "${GO:-go}"
  elif [[ -x /usr/local/go/bin/go ]]; then
    echo /usr/local/go/bin/go
  else
    abort "no Go toolchain: install Go 1.25 or newer (go on PATH or /usr/local/go/bin/go)"
  fi
}

# timed LABEL COMMAND...: runs COMMAND, bounded, and prints how long it took.
timed() {
  local label=$1 start
  shift
  start=$(date +%s)
  timeout "$BUILD_TIMEOUT" "$@"
  echo "built $label in $(($(date +%s) - start)) s" >&2
}

# write_module DIR MODULE_LINES...: a wrapper module that requires what it builds.
write_module() {
  local dir=$1
  shift
  mkdir -p "$dir"
  printf '%s\n' "module blog.local/pulumi-engine" "" "go 1.25" "" "$@" >"$dir/go.mod"
}

build_cli() {
  local out=$1 version=$2 work=$3/cli
  # pkg/go.mod replaces sdk/v3 with ../sdk and atotto/clipboard with a fork, so
  # `go install pkg/v3/cmd/pulumi@version` is refused: require both modules at
  # the same version and carry the replace that points at a published module.
  write_module "$work" \
    "require (" \
    "	github.com/pulumi/pulumi/pkg/v3 v$version" \
    "	github.com/pulumi/pulumi/sdk/v3 v$version" \
    ")" \
    "" \
    "replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e"
  (
    cd "$work"
    GOFLAGS=-mod=mod "$GO_BIN" mod download github.com/pulumi/pulumi/pkg/v3
    timed "pulumi v$version" env CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO_BIN" build -o "$out/pulumi" \
      -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" \
      github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  )
}

build_language_host() {
  local out=$1 version=$2 work=$3/host
  local module=github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3
  if (cd "$3" && GOFLAGS=-mod=mod "$GO_BIN" mod download "$module@v$version") 2>/dev/null; then
    write_module "$work" "require $module v$version" \
      "replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e"
    (cd "$work" && timed "pulumi-language-nodejs v$version" env CGO_ENABLED=0 GOFLAGS=-mod=mod \
      "$GO_BIN" build -o "$out/pulumi-language-nodejs" \
      -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" "$module")
    echo "v$version" >"$out/language-host.version"
    return
  fi
  echo "the module proxy does not serve $module@v$version; building the language host of sdk/v3 $LEGACY_HOST_SDK instead" >&2
  write_module "$work" "require github.com/pulumi/pulumi/sdk/v3 $LEGACY_HOST_SDK"
  (cd "$work" && timed "pulumi-language-nodejs $LEGACY_HOST_SDK" env CGO_ENABLED=0 GOFLAGS=-mod=mod \
    "$GO_BIN" build -o "$out/pulumi-language-nodejs" \
    -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$LEGACY_HOST_SDK" \
    github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs)
  echo "$LEGACY_HOST_SDK (sdk/v3)" >"$out/language-host.version"
}

main() {
  case ${1:-} in
  "" | --print) ;;
  -h | --help)
    cat "$REPO_DIR/scripts/help/build-engine.txt"
    exit 0
    ;;
  *) abort "unknown argument '$1'; expected --print or --help" ;;
  esac
  local version cache dir work
  version=$(locked_version @pulumi/pulumi)
  cache=${BLOG_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/blog-pulumi-engine}
  dir=$cache/pulumi-$version
  if [[ -f $dir/complete ]]; then
    step "Pulumi engine v$version: cached in $dir"
    echo "$dir"
    return
  fi
  [[ ${1:-} != --print ]] || exit 1
  GO_BIN=$(find_go)
  step "Pulumi engine v$version: building into $dir with $("$GO_BIN" version)"
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: the path is fixed
  trap "rm -rf '$work' '$dir.partial'" EXIT
  mkdir -p "$dir.partial/bin"
  build_cli "$dir.partial/bin" "$version" "$work"
  build_language_host "$dir.partial/bin" "$version" "$work"
  "$dir.partial/bin/pulumi" version | grep -qx "v$version" || abort "the built CLI does not report v$version"
  date -u +%FT%TZ >"$dir.partial/complete"
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
  step "Pulumi engine v$version: ready in $dir"
  echo "$dir"
}

main "$@"
