// A stand-in systemctl for the data scripts' tests (data-backup.test.ts, data-volume.test.ts):
// real systemd is not run in the harness's target. Units are directories under STATE/units, named
// as the unit; each holds its properties, one a file:
//   active                   the unit is active (absent: inactive)
//   RequiredBy, BoundBy      space-separated units (`show` prints them; `stop` propagates along them)
//   TriggeredBy              (`show` prints it)
//   ExecStart, ExecStop      shell commands the stand-in runs, inside the target, to start or stop
//                            the unit (a mount unit's mount and umount); one that fails fails the
//                            start (the unit stays inactive) or the stop (it stays active)
//   fail-stop, fail-start    the unit does not stop, or start
// As systemd does (systemd.unit(5), Requires=, BindsTo=): a stop takes down first every unit that
// Requires= or BindsTo= the unit (its RequiredBy and BoundBy), and a start brings up first every
// unit the unit requires (those whose RequiredBy or BoundBy name it), active ones included.
// STATE/log records each call: a stop as it begins, a start once it is done (a test that waits for
// it then sees the units started); STATE/slow-stop makes a stop take 5 s more.
import * as fs from "fs";
import * as path from "path";
import { Target, run } from "./target";

/** The stand-in's script: show, list-units, stop, start. */
export function fakeSystemctl(state: string): string {
  return `#!/bin/bash
set -u
state=${state}
prop() { cat "$state/units/$1/$2" 2>/dev/null || true; }
rc=0
declare -A stopping=() starting=()
stop_one() {
  local unit=$1 dep deps
  [[ -e $state/units/$unit/active && -z \${stopping[$unit]:-} ]] || return 0
  stopping[$unit]=1
  if [[ -e $state/units/$unit/fail-stop ]]; then rc=1; return 0; fi
  read -ra deps <<<"$(prop "$unit" RequiredBy) $(prop "$unit" BoundBy)"
  for dep in "\${deps[@]}"; do stop_one "$dep"; done
  if [[ -e $state/units/$unit/ExecStop ]] && ! bash -c "$(prop "$unit" ExecStop)" </dev/null >&2; then rc=1; return 0; fi
  rm -f "$state/units/$unit/active"
}
# requirements UNIT: the units whose RequiredBy or BoundBy name UNIT.
requirements() {
  local dir names
  for dir in "$state"/units/*; do
    names=" $(prop "\${dir##*/}" RequiredBy) $(prop "\${dir##*/}" BoundBy) "
    if [[ $names == *" $1 "* ]]; then printf '%s\\n' "\${dir##*/}"; fi
  done
}
start_one() {
  local unit=$1 req reqs
  [[ -z \${starting[$unit]:-} ]] || return 0
  starting[$unit]=1
  mkdir -p "$state/units/$unit"
  mapfile -t reqs < <(requirements "$unit")
  for req in "\${reqs[@]}"; do
    start_one "$req"
    if [[ ! -e $state/units/$req/active ]]; then rc=1; return 0; fi
  done
  [[ ! -e $state/units/$unit/active ]] || return 0
  if [[ -e $state/units/$unit/fail-start ]]; then rc=1; return 0; fi
  if [[ -e $state/units/$unit/ExecStart ]] && ! bash -c "$(prop "$unit" ExecStart)" </dev/null >&2; then rc=1; return 0; fi
  touch "$state/units/$unit/active"
}
cmd=$1
shift
case $cmd in
show)
  props=() unit=""
  while (($# > 0)); do
    case $1 in
    -p) props+=("$2"); shift 2 ;;
    --value) shift ;;
    *) unit=$1; shift ;;
    esac
  done
  for p in "\${props[@]}"; do
    if [[ $p == ActiveState ]]; then
      if [[ -e $state/units/$unit/active ]]; then echo active; else echo inactive; fi
    elif [[ $p == LoadState ]]; then
      if [[ -d $state/units/$unit ]]; then echo loaded; else echo not-found; fi
    else
      echo "$(prop "$unit" "$p")"
    fi
  done
  ;;
list-units)
  for dir in "$state"/units/*; do
    if [[ -e $dir/active ]]; then echo "\${dir##*/} loaded active running stand-in"; fi
  done
  ;;
stop)
  echo "stop $*" >>"$state/log"
  if [[ -e $state/slow-stop ]]; then sleep 5; fi
  for u in "$@"; do stop_one "$u"; done
  exit $rc
  ;;
start)
  for u in "$@"; do start_one "$u"; done
  echo "start $*" >>"$state/log"
  exit $rc
  ;;
*)
  echo "stand-in systemctl: $cmd is not supported" >&2
  exit 1
  ;;
esac
`;
}

/**
 * Writes the stand-in to DIR/systemd-bin/systemctl of the target and makes its SSH sessions find it
 * first on PATH, through root's ~/.bashrc (which Debian's bash reads for a command sshd runs);
 * checks that they do. Returns the stand-in's directory.
 */
export function installFakeSystemctl(t: Target, state: string): string {
  const bin = path.join(t.dir, "systemd-bin");
  fs.mkdirSync(bin, { recursive: true });
  fs.writeFileSync(path.join(bin, "systemctl"), fakeSystemctl(state), { mode: 0o755 });
  fs.writeFileSync(path.join(t.dir, "root-home", ".bashrc"), `export PATH=${bin}:$PATH\n`);
  const found = run("ssh", [
    ...["-i", path.join(t.dir, "client_key"), "-p", String(t.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"],
    ...["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", `root@${t.addr4}`, "command -v systemctl"],
  ]);
  if (found.stdout.trim() !== path.join(bin, "systemctl")) {
    throw new Error(`the target's sessions do not find the stand-in systemctl (they find '${found.stdout.trim()}'): ~/.bashrc not read?`);
  }
  return bin;
}
