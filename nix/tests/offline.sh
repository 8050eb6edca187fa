#!/usr/bin/env bash
# Offline checks of nix/: every .nix file parses, the host facts match the
# contract (tests/offline.nix), and the VM test's Python is valid syntax.
# Needs only nix-instantiate (Debian's nix-bin is enough) and python3.
set -euo pipefail

nix_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Nix configured here, not by the machine: no /etc/nix/nix.conf and no nixbld
# group needed (the same settings as the tests, tests/nixConfig.ts).
mkdir -p "$tmp/nix-conf"
export NIX_CONF_DIR="$tmp/nix-conf" NIX_USER_CONF_FILES=""
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nsubstituters ='

step() { printf '== %s\n' "$*"; }

step "every .nix file parses"
while IFS= read -r -d '' file; do
  nix-instantiate --parse "$file" >/dev/null
done < <(find "$nix_dir" -name '*.nix' -print0)

step "host facts match the contract; the VM test script renders"
nix-instantiate --eval --strict --json "$nix_dir/tests/offline.nix" >"$tmp/vm_test_script.json"
python3 -c 'import json, sys; sys.stdout.write(json.load(open(sys.argv[1])))' \
  "$tmp/vm_test_script.json" >"$tmp/vm_test_script.py"

step "the VM test script is valid Python"
python3 -m py_compile "$tmp/vm_test_script.py"

step "ok"
