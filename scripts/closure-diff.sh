#!/usr/bin/env bash
# closure-diff.sh: the Markdown section for a pull request that says how the
# NixOS system closure changes between what is deployed and what the PR builds.
#
#   closure-diff.sh [options] OLD NEW
#       OLD, NEW: store paths (/nix/store/...-nixos-system-...).
#   closure-diff.sh [options] --stack-output NAME --flake-attr ATTR
#       OLD = `pulumi stack output NAME` (the deployed system),
#       NEW = the out path of `nix build ATTR` (the system this checkout builds).
#
# Options:
#   --stack NAME        Pulumi stack for --stack-output (default: the selected stack)
#   --base-flake-attr ATTR
#                       when OLD is not in the local store, build ATTR (the
#                       system the pull request's base commit builds): if that
#                       is OLD, OLD is here; if not (the base is not what is
#                       deployed), the section compares with ATTR's system and
#                       says so. No key and no connection to the server: what
#                       the pull request workflow uses.
#   --from STORE_URL    where to fetch OLD when it is not in the local store,
#                       e.g. ssh-ng://root@203.0.113.10 (ssh options via NIX_SSHOPTS);
#                       paths the configured caches have are substituted first.
#                       Without it (and --base-flake-attr) OLD is realised from
#                       the configured substituters.
#   --heading TEXT      Markdown heading (default: "NixOS closure diff")
#   -h, --help
#
# Prints Markdown on stdout, progress on stderr. Exit codes: 0 printed,
# 1 bad arguments, 2 a closure could not be resolved or realised.
set -euo pipefail

heading="NixOS closure diff"
old=""
new=""
stack=""
stack_output=""
flake_attr=""
base_flake_attr=""
from=""
# What OLD is, in the section: the deployed system, or what the base commit builds instead.
old_label="deployed"
old_note=""
nothing_deployed=""

workdir=""
nix=(nix --extra-experimental-features "nix-command flakes")
# store_path_re, uint_re: the forms the deploy checks too.
# shellcheck source=scripts/lib/patterns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/patterns.sh"

# Counts and Markdown table rows, filled by parseDiff.
added=0
removed=0
upgraded=0
downgraded=0
size_only=0
rows=()

step() { echo "closure-diff: $*" >&2; }
abort() {
  local code="$1"
  shift
  echo "closure-diff: error: $*" >&2
  exit "$code"
}

usage() { cat "$(dirname "${BASH_SOURCE[0]}")/help/closure-diff.txt"; }

# Every bad argument is collected and reported at once (exit 1).
problems=()

# optionValue OPTION VALUE...: prints VALUE; fails when the option has none.
optionValue() {
  if [[ $# -lt 2 || -z "$2" || "$2" == --* ]]; then
    return 1
  fi
  printf '%s' "$2"
}

parseArgs() {
  local positional=() value
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --stack | --stack-output | --flake-attr | --from | --base-flake-attr | --heading)
        if value="$(optionValue "$@")"; then
          case "$1" in
            --stack) stack="$value" ;;
            --stack-output) stack_output="$value" ;;
            --flake-attr) flake_attr="$value" ;;
            --from) from="$value" ;;
            --base-flake-attr) base_flake_attr="$value" ;;
            --heading) heading="$value" ;;
          esac
          shift 2
        else
          problems+=("$1 needs a value")
          shift
        fi
        ;;
      -h | --help) usage; exit 0 ;;
      --) shift; positional+=("$@"); break ;;
      -*) problems+=("unknown option: $1"); shift ;;
      *) positional+=("$1"); shift ;;
    esac
  done
  if [[ ${#positional[@]} -eq 2 && -z "$stack_output$flake_attr" ]]; then
    old="${positional[0]}"
    new="${positional[1]}"
  elif [[ ${#positional[@]} -eq 0 && -n "$stack_output" && -n "$flake_attr" ]]; then
    :
  else
    problems+=("give two store paths (OLD NEW), or --stack-output NAME and --flake-attr ATTR")
  fi
  if [[ ${#problems[@]} -gt 0 ]]; then
    local problem message="${#problems[@]} problem(s) with the arguments (see --help):"
    for problem in "${problems[@]}"; do message+=$'\n'"  - $problem"; done
    abort 1 "$message"
  fi
}

# OLD from the stack: the system the stack says is deployed. A stack that has
# not deployed yet has no such output; that is not an error.
resolveDeployed() {
  # --show-secrets: a store path is no secret, but would print as [secret]
  # if the stack marked the output as one.
  local args=(stack output "$stack_output" --show-secrets)
  [[ -n "$stack" ]] && args+=(--stack "$stack")
  step "reading stack output $stack_output"
  local errors="$workdir/pulumi.err"
  if ! old="$(pulumi "${args[@]}" 2>"$errors")"; then
    if grep -q "does not have output property" "$errors"; then
      old=""
    else
      cat "$errors" >&2
      abort 2 "pulumi ${args[*]} failed"
    fi
  fi
  if [[ -z "$old" ]]; then
    nothing_deployed=1
  fi
}

# buildAttr ATTR: builds a flake attribute (a NixOS system must be built to be
# diffed) and prints its out path. --json, not --print-out-paths: Nix 2.8
# (Debian 12) lacks the latter. The lock file is the committed one: nothing
# here rewrites it.
buildAttr() {
  local attr="$1" built out
  step "building $attr"
  built="$("${nix[@]}" build --no-link --no-write-lock-file --json "$attr")" ||
    abort 2 "nix build $attr failed"
  out="$(grep -o '"out":"[^"]*"' <<<"$built" | head -n 1 | cut -d '"' -f 4)"
  [[ -n "$out" ]] || abort 2 "nix build $attr printed no out path"
  checkStorePath "the out path of $attr" "$out"
  echo "$out"
}

# NEW from the flake.
buildProposed() {
  new="$(buildAttr "$flake_attr")"
}

# printable TEXT: TEXT holds printable ASCII only (nothing a log would interpret).
printable() {
  local LC_ALL=C
  [[ $1 =~ ^[[:print:]]*$ ]]
}

# OLD and NEW (from the stack's output, from nix build, or given) go onto
# command lines and into the comment: exactly a store path, nothing else.
checkStorePath() {
  local what="$1" path="$2"
  if [[ ! "$path" =~ $store_path_re ]]; then
    printable "$path" || path="(not printable)"
    abort 1 "$what is not a store path: '${path:0:200}'"
  fi
}

# diff-closures needs both closures in the local store. Paths copied from the
# deployed host carry no cache signature: --no-check-sigs, as they come from
# our own server over SSH with its host key pinned (see NIX_SSHOPTS).
realise() {
  local path="$1"
  if nix-store --check-validity "$path" 2>/dev/null; then
    return 0
  fi
  if [[ -n "$from" ]]; then
    step "copying $path from $from"
    "${nix[@]}" copy --substitute-on-destination --no-check-sigs --from "$from" "$path" >&2 ||
      abort 2 "could not copy $path from $from"
  else
    step "realising $path from the substituters"
    nix-store --realise "$path" >/dev/null ||
      abort 2 "$path is not in the local store and no substituter has it (use --from)"
  fi
}

# realiseOld: OLD in the local store. From the base commit's build when it is
# OLD (--base-flake-attr); when that build is another system, OLD becomes it,
# and the section says so.
realiseOld() {
  local base
  if nix-store --check-validity "$old" 2>/dev/null || [[ -z "$base_flake_attr" ]]; then
    realise "$old"
    return 0
  fi
  base="$(buildAttr "$base_flake_attr")"
  if [[ "$base" == "$old" ]]; then
    step "the base commit builds the deployed system: $old"
    return 0
  fi
  step "the base commit builds $base, not the deployed $old"
  # Backticks are Markdown code spans.
  # shellcheck disable=SC2016
  old_note="$(printf 'The deployed system (`%s`) is not what the base commit builds: its deploy has not run yet, or failed, or the stack deploys another system. This compares with the base commit'"'"'s system.' "$old")"
  old_label="base commit"
  old="$base"
}

closureSize() {
  local size
  size="$("${nix[@]}" path-info --closure-size "$1" | awk '{ print $2 }')"
  [[ "$size" =~ $uint_re ]] || abort 2 "nix path-info gave no closure size for $1"
  echo "$size"
}

# Bytes to binary units with one decimal, as nix prints them: 1.5 MiB.
humanBytes() {
  awk -v b="$1" 'BEGIN {
    split("B KiB MiB GiB TiB", unit, " ")
    sign = b < 0 ? "-" : ""; b = b < 0 ? -b : b
    i = 1; while (b >= 1024 && i < 5) { b /= 1024; i++ }
    if (i == 1) printf "%s%d %s\n", sign, b, unit[i]
    else printf "%s%.1f %s\n", sign, b, unit[i]
  }'
}

# `nix store diff-closures` lines, without colours (nix 2.8 colours the size
# even when stdout is no terminal):
#   name: 1.0 → 1.1, +12.3 KiB    name: ∅ → 1.0    name: 1.0 → ∅    name: +8.5 KiB
diffClosures() {
  "${nix[@]}" store diff-closures "$old" "$new" | sed 's/\x1b\[[0-9;]*m//g'
}

# Is version $2 newer than $1? For several versions on one side
# ("1.0, 1.1"), the newest of each side counts.
isUpgrade() {
  local before after
  before="$(tr ',' '\n' <<<"$1" | sed 's/^ *//' | sort -V | tail -n 1)"
  after="$(tr ',' '\n' <<<"$2" | sed 's/^ *//' | sort -V | tail -n 1)"
  [[ "$before" != "$after" && "$(printf '%s\n%s\n' "$before" "$after" | sort -V | tail -n 1)" == "$after" ]]
}

# Reads diff-closures lines; sets the counts and the table rows.
parseDiff() {
  local line name rest versions size before after
  while IFS= read -r line; do
    [[ "$line" == *": "* ]] || continue
    name="${line%%: *}"
    rest="${line#*: }"
    size=""
    versions="$rest"
    if [[ "$rest" =~ ^(.*, )?([+-][0-9.]+\ [KMGT]?i?B)$ ]]; then
      size="${BASH_REMATCH[2]}"
      versions="${BASH_REMATCH[1]%, }"
    fi
    if [[ "$versions" == *" → "* ]]; then
      before="${versions%% → *}"
      after="${versions#* → }"
      if [[ "$before" == "∅" ]]; then
        added=$((added + 1))
      elif [[ "$after" == "∅" ]]; then
        removed=$((removed + 1))
      elif isUpgrade "$before" "$after"; then
        upgraded=$((upgraded + 1))
      else
        downgraded=$((downgraded + 1))
      fi
    else
      before=""
      after=""
      size_only=$((size_only + 1))
    fi
    rows+=("| $name | $before | $after | $size |")
  done
}

plural() { if [[ "$1" -eq 1 ]]; then echo "$1 $2"; else echo "$1 $2s"; fi; }

printOldNote() {
  [[ -z "$old_note" ]] || printf '%s\n\n' "$old_note"
}

# Backticks in the printf formats below are Markdown code spans.
# shellcheck disable=SC2016
printNothingDeployed() {
  local size
  size="$(closureSize "$new")"
  printf '### %s\n\n' "$heading"
  printf 'Nothing is deployed yet (the stack has no `%s` output): the whole system is new, closure size %s.\n\n' \
    "$stack_output" "$(humanBytes "$size")"
  printf '<sub>this change: `%s`</sub>\n' "$new"
}

# shellcheck disable=SC2016
printUnchanged() {
  printf '### %s\n\n' "$heading"
  printf 'The NixOS system closure does not change.\n\n'
  printOldNote
  printf '<sub>%s: `%s` · this change: `%s`</sub>\n' "$old_label" "$old" "$new"
}

# The system path changes although no package does: configuration only
# (a unit, a file in /etc). The deploy still runs, so say so.
# shellcheck disable=SC2016
printConfigurationOnly() {
  printf '### %s\n\n' "$heading"
  printf 'No package changes version or size; the system itself changes (configuration only), so the deploy will run.\n\n'
  printOldNote
  printf '<sub>%s: `%s` · this change: `%s`</sub>\n' "$old_label" "$old" "$new"
}

# shellcheck disable=SC2016
printChanges() {
  local size_old size_new delta sign="" changed counts
  size_old="$(closureSize "$old")"
  size_new="$(closureSize "$new")"
  delta=$((size_new - size_old))
  [[ "$delta" -ge 0 ]] && sign="+"
  changed=$((added + removed + upgraded + downgraded))
  counts="$added added, $removed removed, $upgraded upgraded"
  [[ "$downgraded" -gt 0 ]] && counts+=", $downgraded downgraded"
  [[ "$size_only" -gt 0 ]] && counts+="; $(plural "$size_only" "package") changed in size only"

  printf '### %s\n\n' "$heading"
  printf '**%s changed** (%s).\n' "$(plural "$changed" "package")" "$counts"
  printf 'Closure size: %s → %s (%s%s).\n\n' "$(humanBytes "$size_old")" "$(humanBytes "$size_new")" \
    "$sign" "$(humanBytes "$delta")"
  printf '<details>\n<summary>All changes (<code>nix store diff-closures</code>)</summary>\n\n'
  printf '| Package | Deployed | This change | Size |\n| --- | --- | --- | --- |\n'
  printf '%s\n' "${rows[@]}"
  printf '\n</details>\n\n'
  printOldNote
  printf '<sub>%s: `%s` · this change: `%s`</sub>\n' "$old_label" "$old" "$new"
}

main() {
  parseArgs "$@"
  workdir="$(mktemp -d)"
  trap 'rm -rf "$workdir"' EXIT

  if [[ -n "$stack_output" ]]; then
    resolveDeployed
    buildProposed
  fi
  checkStorePath NEW "$new"
  realise "$new"
  if [[ -n "$nothing_deployed" ]]; then
    printNothingDeployed
    return 0
  fi
  checkStorePath OLD "$old"
  if [[ "$old" == "$new" ]]; then
    printUnchanged
    return 0
  fi
  realiseOld
  if [[ "$old" == "$new" ]]; then
    printUnchanged
    return 0
  fi

  local diff
  diff="$(diffClosures)" || abort 2 "nix store diff-closures failed"
  parseDiff <<<"$diff"
  if [[ ${#rows[@]} -eq 0 ]]; then
    printConfigurationOnly
  else
    printChanges
  fi
}

main "$@"
