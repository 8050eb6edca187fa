#!/usr/bin/env bash
# Offline checks of nix/: every .nix file parses, the host facts match the
# contract (tests/offline.nix), the host's own shell scripts pass shellcheck
# (as writeShellApplication checks them when it builds) and behave as their
# units need (tests/host-scripts-test.sh), and the VM test's
# Python is valid syntax and uses no undefined name. Needs only nix-instantiate
# (Debian's nix-bin is enough), shellcheck and python3; the scripts' behaviour
# (tests/host-scripts-test.sh) also needs root, and is skipped without it.
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

step "the host's shell scripts pass shellcheck"
shellcheck --shell=bash "$nix_dir"/modules/*.sh "$nix_dir"/modules/units/*.sh "$nix_dir"/tests/*.sh

step "the backup's units render from their data (nix/modules/units/backup.nix, as the test systems render them)"
nix-instantiate --eval --strict --json -E \
  "let b = import $nix_dir/../tests/integration/harness/backup-units.nix { modules = $nix_dir/modules; }; in builtins.attrNames b.units" \
  >"$tmp/backup_units.json"
python3 - "$tmp/backup_units.json" <<'PYTHON'
import json
import sys

units = set(json.load(open(sys.argv[1])))
expected = {"restic-backups-blog.service", "restic-backups-blog.timer", "restic-backups-blog-prune.service",
            "restic-backups-blog-check.service", "restic-backups-blog-check.timer", "blog-backup-drill.service",
            "blog-backup-drill.timer"}
if units != expected:
    sys.exit(f"the backup's units are {sorted(units)}; expected {sorted(expected)}")
PYTHON

step "the host's shell scripts behave (stand-ins for what only NixOS has; needs root)"
bash "$nix_dir/tests/host-scripts-test.sh"

step "host facts match the contract; the VM test script renders"
nix-instantiate --eval --strict --json "$nix_dir/tests/offline.nix" >"$tmp/vm_test_script.json"
python3 -c 'import json, sys; sys.stdout.write(json.load(open(sys.argv[1])))' \
  "$tmp/vm_test_script.json" >"$tmp/vm_test_script.py"

step "the VM test script is valid Python"
python3 -m py_compile "$tmp/vm_test_script.py"

step "the VM test script uses no name it does not define (besides the test driver's)"
nix-instantiate --eval --strict --json -E \
  "builtins.attrNames (import $nix_dir/tests/vm.nix { inputs.nixpkgs = \"/nix/store/nixpkgs\"; scripts = \"/nix/store/scripts\"; } { lib = { }; }).nodes" \
  >"$tmp/vm_nodes.json"
python3 - "$tmp/vm_test_script.py" "$tmp/vm_nodes.json" <<'PYTHON'
import ast
import builtins
import json
import sys

tree = ast.parse(open(sys.argv[1]).read())
# What nixpkgs' test driver puts in the script's globals that this test uses:
# a machine per node, subtest and start_all (nixos/lib/test-driver).
defined = set(dir(builtins)) | set(json.load(open(sys.argv[2]))) | {"subtest", "start_all"}
for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        defined.add(node.name)
    elif isinstance(node, ast.arg):
        defined.add(node.arg)
    elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
        defined.add(node.id)
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
undefined = sorted(used - defined)
if undefined:
    sys.exit(f"the VM test script uses undefined names: {', '.join(undefined)}")
PYTHON

step "ok"
