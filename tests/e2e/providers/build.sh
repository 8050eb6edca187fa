#!/usr/bin/env bash
# Builds the e2e suite's stand-in provider plugins: compiles the TypeScript sources here into
# OUT_DIR/js and writes one launcher per plugin into OUT_DIR/bin, named as the engine looks for
# it on PATH (pulumi-resource-hcloud, -cloudflare, -tls, -command). Prints OUT_DIR/bin, the
# directory to put first on PATH.
#
#   build.sh OUT_DIR
#
# The launchers run the compiled files with the node that ran this script and set nothing in the
# environment: the plugins find the project's node_modules through OUT_DIR/js/node_modules (a
# symlink) and the checkout through OUT_DIR/js/standins.json.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
REPO=$(cd "$HERE/../../.." && pwd)
readonly REPO
readonly PLUGINS=(hcloud cloudflare tls command random)

abort() {
  echo "build.sh: $*" >&2
  exit 1
}

# write_launcher FILE NODE SCRIPT
write_launcher() {
  local file=$1 node=$2 script=$3
  {
    echo '#!/usr/bin/env bash'
    echo "# Stand-in provider plugin of the blog e2e suite (tests/e2e/providers/build.sh)."
    echo 'set -euo pipefail'
    printf 'exec %q %q "$@"\n' "$node" "$script"
  } >"$file"
  chmod 755 "$file"
}

main() {
  local out=${1:-} node name
  [[ -n $out ]] || abort "usage: build.sh OUT_DIR"
  node=$(command -v node) || abort "node is not on PATH"
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  rm -rf "${out:?}/js" "${out:?}/bin"
  "$REPO/node_modules/.bin/tsc" -p "$HERE/tsconfig.json" --outDir "$out/js"
  ln -s "$REPO/node_modules" "$out/js/node_modules"
  "$node" -e 'process.stdout.write(JSON.stringify({ repo: process.argv[1] }) + "\n")' "$REPO" >"$out/js/standins.json"
  mkdir -p "$out/bin"
  for name in "${PLUGINS[@]}"; do
    write_launcher "$out/bin/pulumi-resource-$name" "$node" "$out/js/$name.js"
  done
  echo "$out/bin"
}

main "$@"
