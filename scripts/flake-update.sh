#!/usr/bin/env bash
# Moves the flake's inputs to the newest commit of the release line each follows, writes the lock
# file (creating it when it is missing), and writes the pull request's text: what changed, and
# whether the NixOS release in use is near the end of its support. Run weekly by
# .github/workflows/update.yml, or by hand on a machine with network access:
#
#   scripts/flake-update.sh [--flake DIR] [--body FILE] [--no-lock]
#
# DIR (default nix) holds flake.nix. An input follows a release line in one of two ways:
#
#   nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.11";   the URL names a branch; the lock file pins
#                                                       its commit, and `nix flake update NAME`
#                                                       moves it to the branch's newest
#   # update: tag v1.13.0 within v1.*                   a marker comment before a URL pinned by
#   url = "github:OWNER/REPO/<40 hex>";                 revision: the revision becomes the commit of
#                                                       the newest tag matching the glob (version
#                                                       order, no pre-releases), and the marker
#                                                       names that tag
#   # update: branch BRANCH                             ...or the newest commit of BRANCH
#
# An input pinned by revision without a marker is left as it is (the backend, which keeps its own
# nixpkgs). `nix flake lock DIR` then locks what the URLs name (--no-lock skips the Nix steps).
# FILE (default: stdout) gets the pull request's body in Markdown. With GITHUB_OUTPUT set,
# `changed=true|false` and `end-of-support=ok|near|past|unknown|none` are written there.
#
# Environment: FLAKE_UPDATE_GIT_URL, a printf template that turns OWNER/REPO into the URL
# `git ls-remote` asks (default https://github.com/%s); FLAKE_UPDATE_TODAY (YYYY-MM-DD, default
# today, UTC); NIX (default nix). Needs git, jq, GNU date. Exit codes: 0 done (changed or not),
# 1 bad input, 2 a remote or Nix did not answer as expected.
set -euo pipefail

# NixOS releases and the last day of their support (each release is supported for about seven
# months, until a month after the next one; 26.05's date is the one its announcement gave). Add
# each new release here when it comes out.
readonly NIXOS_END_OF_SUPPORT=(
  "26.05 2026-12-31"
  "26.11 2027-06-30"
)
# The pull request says so from this many days before the end.
readonly NEAR_END_DAYS=60

readonly EXIT_BAD_INPUT=1
readonly EXIT_REMOTE=2

flake_dir=nix
body_file=
lock=1
git_url=${FLAKE_UPDATE_GIT_URL:-https://github.com/%s}
today=${FLAKE_UPDATE_TODAY:-$(date -u +%F)}
nix_bin=${NIX:-nix}

# What the run found, one entry per input that follows a line: "name|owner/repo|follows|old|new".
updates=()
# Inputs whose URL names a branch: "name|owner/repo|branch".
branch_inputs=()
nixpkgs_branch=

abort() {
  local code=$1
  shift
  printf 'flake-update: %s\n' "$*" >&2
  exit "$code"
}

step() { printf '==> %s\n' "$*" >&2; }

parse_args() {
  local problems=() problem message
  while (($# > 0)); do
    case $1 in
    -h | --help)
      cat "$(dirname "${BASH_SOURCE[0]}")/help/flake-update.txt"
      exit 0
      ;;
    --flake | --body)
      if (($# < 2)) || [[ -z $2 || $2 == --* ]]; then
        problems+=("$1 needs a value")
        shift
        continue
      fi
      if [[ $1 == --flake ]]; then flake_dir=$2; else body_file=$2; fi
      shift 2
      ;;
    --no-lock)
      lock=0
      shift
      ;;
    *)
      problems+=("unknown argument '$1'; expected --flake DIR, --body FILE, --no-lock")
      shift
      ;;
    esac
  done
  [[ -f $flake_dir/flake.nix ]] || problems+=("--flake $flake_dir: no flake.nix there")
  [[ $today =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || problems+=("FLAKE_UPDATE_TODAY='$today'; expected YYYY-MM-DD")
  case ${#problems[@]} in
  0) return 0 ;;
  1) abort "$EXIT_BAD_INPUT" "${problems[0]}" ;;
  esac
  message="${#problems[@]} problems with the input (see --help):"
  for problem in "${problems[@]}"; do message+=$'\n'"  - $problem"; done
  abort "$EXIT_BAD_INPUT" "$message"
}

# remote_url OWNER/REPO
remote_url() {
  # shellcheck disable=SC2059 # the template is the format, by design
  printf "$git_url" "$1"
}

# newest_on_branch OWNER/REPO BRANCH: the commit the branch points at.
newest_on_branch() {
  local out sha ref line_re=$'^([0-9a-f]{40})\t(refs/heads/[^[:space:]]+)$'
  out=$(timeout 120 git ls-remote "$(remote_url "$1")" "refs/heads/$2") ||
    abort "$EXIT_REMOTE" "git ls-remote of $1 failed"
  # Exactly one line, "<40 hex>\trefs/heads/<branch>": anything else is not used.
  [[ $out =~ $line_re ]] || abort "$EXIT_REMOTE" "$1 has no branch '$2' (ls-remote answered ${#out} bytes)"
  sha=${BASH_REMATCH[1]}
  ref=${BASH_REMATCH[2]}
  [[ $ref == "refs/heads/$2" ]] || abort "$EXIT_REMOTE" "$1 answered $ref for branch '$2'"
  echo "$sha"
}

# newest_tag OWNER/REPO GLOB: "<tag> <commit>" of the newest tag matching GLOB, in version order.
newest_tag() {
  local out line sha ref tag best='' tag_re
  local -A commit_of=()
  tag_re=$'^([0-9a-f]{40})\trefs/tags/([A-Za-z0-9._+-]+)(\\^\\{\\})?$'
  out=$(timeout 120 git ls-remote --tags "$(remote_url "$1")") || abort "$EXIT_REMOTE" "git ls-remote --tags of $1 failed"
  while IFS= read -r line; do
    [[ $line =~ $tag_re ]] || continue
    sha=${BASH_REMATCH[1]}
    tag=${BASH_REMATCH[2]}
    # shellcheck disable=SC2053 # GLOB is a pattern, by design
    [[ $tag == $2 ]] || continue
    # Pre-releases (1.14.0-rc1) are not a release line's newest.
    [[ $tag != *-* ]] || continue
    # An annotated tag is listed twice; the peeled line (^{}) names the commit.
    if [[ -n ${BASH_REMATCH[3]} || -z ${commit_of[$tag]:-} ]]; then commit_of[$tag]=$sha; fi
  done <<<"$out"
  ((${#commit_of[@]} > 0)) || abort "$EXIT_REMOTE" "$1 has no tag matching '$2'"
  ref=$(printf '%s\n' "${!commit_of[@]}" | sort -V | tail -n 1)
  best="$ref ${commit_of[$ref]}"
  echo "$best"
}

# update_inputs: rewrites each marked input's revision (and a tag marker's tag) in flake.nix, and
# notes the inputs whose URL names a branch (the lock file moves those).
update_inputs() {
  local file=$flake_dir/flake.nix line n=0 marker='' kind='' arg='' within='' marker_line='' indent name owner_repo old new tag found ref
  local url_re='^([[:space:]]*)(([A-Za-z0-9_-]+)\.)?url = "github:([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)/([A-Za-z0-9._/-]+)";'
  local name_re='^[[:space:]]*([A-Za-z0-9_-]+) = \{'
  local last_name=''
  local -a lines=()
  mapfile -t lines <"$file"
  for n in "${!lines[@]}"; do
    line=${lines[$n]}
    if [[ $line =~ ^[[:space:]]*#[[:space:]]*update:[[:space:]]*(.*)$ ]]; then
      marker=${BASH_REMATCH[1]}
      if [[ $marker =~ ^branch\ ([A-Za-z0-9._/-]+)$ ]]; then
        kind=branch arg=${BASH_REMATCH[1]}
      elif [[ $marker =~ ^tag\ ([A-Za-z0-9._+-]+)\ within\ ([A-Za-z0-9._*+-]+)$ ]]; then
        kind=tag arg=${BASH_REMATCH[1]} within=${BASH_REMATCH[2]}
        marker_line=$n
      else
        abort "$EXIT_BAD_INPUT" "$file line $((n + 1)): '# update: $marker'; expected 'branch BRANCH' or 'tag TAG within GLOB'"
      fi
      continue
    fi
    [[ $line =~ $name_re ]] && last_name=${BASH_REMATCH[1]}
    [[ $line =~ $url_re ]] || continue
    indent=${BASH_REMATCH[1]}
    name=${BASH_REMATCH[3]:-$last_name}
    owner_repo=${BASH_REMATCH[4]}
    ref=${BASH_REMATCH[5]}
    if ! [[ $ref =~ ^[0-9a-f]{40}$ ]]; then
      # The URL names a branch: the lock file pins its commit, `nix flake update` moves it.
      [[ -z $kind ]] || abort "$EXIT_BAD_INPUT" "$file line $((n + 1)): '# update:' before a URL that names no revision ($ref); a marker needs a URL pinned by revision"
      branch_inputs+=("$name|$owner_repo|$ref")
      [[ $name == nixpkgs ]] && nixpkgs_branch=$ref
      step "$name: follows the branch $ref through the lock file"
      continue
    fi
    old=$ref
    if [[ -z $kind ]]; then
      step "$name: no '# update:' marker, left at ${old:0:12}"
      continue
    fi
    if [[ $kind == branch ]]; then
      new=$(newest_on_branch "$owner_repo" "$arg")
      updates+=("$name|$owner_repo|branch $arg|$old|$new")
      [[ $name == nixpkgs ]] && nixpkgs_branch=$arg
    else
      found=$(newest_tag "$owner_repo" "$within")
      read -r tag new <<<"$found"
      updates+=("$name|$owner_repo|tag $tag (newest $within; was $arg)|$old|$new")
      lines[marker_line]=${lines[marker_line]/"tag $arg within"/"tag $tag within"}
    fi
    step "$name: ${old:0:12} -> ${new:0:12} ($kind ${arg})"
    lines[n]=${line/"/$old\";"/"/$new\";"}
    [[ ${lines[n]} == "$indent"* ]] || abort "$EXIT_BAD_INPUT" "internal: line $((n + 1)) lost its indentation"
    kind='' arg='' within=''
  done
  printf '%s\n' "${lines[@]}" >"$file.new"
  mv "$file.new" "$file"
}

# locked_rev LOCKFILE INPUT: the commit the lock file pins for a root input (empty when none).
locked_rev() {
  local rev
  [[ -f $1 ]] || return 0
  rev=$(jq -r --arg n "$2" '.nodes[.root].inputs[$n] as $k | if ($k | type) == "string" then .nodes[$k].locked.rev // "" else "" end' "$1") ||
    abort "$EXIT_REMOTE" "$1 is not a lock file jq can read"
  [[ -z $rev || $rev =~ ^[0-9a-f]{40}$ ]] || abort "$EXIT_REMOTE" "$1 pins '$rev' for $2; expected a commit"
  echo "$rev"
}

nix_flake() {
  timeout 1800 "$nix_bin" --extra-experimental-features 'nix-command flakes' flake "$@" ||
    abort "$EXIT_REMOTE" "nix flake $1 failed"
}

# flake_ref: DIR as Nix takes it (a relative path needs "./", or it names a flake of the registry).
flake_ref() {
  case $flake_dir in
  /* | ./* | ../*) echo "$flake_dir" ;;
  *) echo "./$flake_dir" ;;
  esac
}

# lock_inputs: locks what the URLs name (a missing lock file is created), moves the inputs whose
# URL names a branch to its newest commit, and notes what they moved from and to.
lock_inputs() {
  local entry name owner_repo ref old new names=()
  local before=$flake_dir/flake.lock.before
  [[ -f $flake_dir/flake.lock ]] && cp "$flake_dir/flake.lock" "$before"
  if ((lock == 1)); then
    step "nix flake lock $flake_dir"
    nix_flake lock "$(flake_ref)"
    for entry in "${branch_inputs[@]}"; do names+=("${entry%%|*}"); done
    # The lock file just created already holds each branch's newest commit.
    if [[ -f $before && ${#names[@]} -gt 0 ]]; then
      step "nix flake update ${names[*]}"
      nix_flake update --flake "$(flake_ref)" "${names[@]}"
    fi
  fi
  for entry in "${branch_inputs[@]}"; do
    IFS='|' read -r name owner_repo ref <<<"$entry"
    old=$(locked_rev "$before" "$name")
    if ((lock == 1)); then
      new=$(locked_rev "$flake_dir/flake.lock" "$name")
      [[ -n $new ]] || abort "$EXIT_REMOTE" "the lock file pins no commit for $name"
    else
      new=$(newest_on_branch "$owner_repo" "$ref")
    fi
    updates+=("$name|$owner_repo|branch $ref (lock file)|${old:-none}|$new")
  done
  rm -f "$before"
}

# end_of_support: "<release> <last day> <days left>" for the nixpkgs branch's release, or nothing.
end_of_support() {
  local entry release=${nixpkgs_branch#nixos-} end left
  [[ $nixpkgs_branch =~ ^nixos-[0-9]{2}\.[0-9]{2}$ ]] || return 0
  for entry in "${NIXOS_END_OF_SUPPORT[@]}"; do
    [[ ${entry%% *} == "$release" ]] || continue
    end=${entry#* }
    left=$((($(date -u -d "$end" +%s) - $(date -u -d "$today" +%s)) / 86400))
    echo "$release $end $left"
    return 0
  done
  echo "$release unknown 0"
}

write_body() {
  local entry name owner_repo follows old new changed=0 eos release end left status=none
  {
    echo "### Flake inputs, each at the newest commit of its release line"
    echo
    echo "| Input | Follows | Was | Now |"
    echo "| --- | --- | --- | --- |"
    for entry in "${updates[@]}"; do
      IFS='|' read -r name owner_repo follows old new <<<"$entry"
      if [[ $old == "$new" ]]; then
        echo "| $name | $follows | \`${old:0:12}\` | unchanged |"
      elif [[ $old == none ]]; then
        changed=1
        echo "| $name | $follows | not locked | \`${new:0:12}\` |"
      else
        changed=1
        echo "| $name | $follows | \`${old:0:12}\` | \`${new:0:12}\` ([changes](https://github.com/$owner_repo/compare/$old...$new)) |"
      fi
    done
    echo
    if [[ $lock_state == created ]]; then
      echo "\`$flake_dir/flake.lock\` did not exist: this pull request creates it."
    elif [[ $lock_state == updated ]]; then
      echo "\`$flake_dir/flake.lock\` follows the new revisions."
    fi
    echo
    eos=$(end_of_support)
    if [[ -n $eos ]]; then
      read -r release end left <<<"$eos"
      echo "### NixOS $release"
      echo
      if [[ $end == unknown ]]; then
        status=unknown
        echo "Its end of support is not in the table of \`scripts/flake-update.sh\`: add it (the release notes say)."
      elif ((left < 0)); then
        status=past
        echo "**NixOS $release is no longer supported (its support ended on $end): it gets no security fixes.** Move to a supported release: docs/operations.md says how ("Upgrade the NixOS release"; the nixpkgs line in \`nix/flake.nix\`)."
      elif ((left <= NEAR_END_DAYS)); then
        status=near
        echo "**NixOS $release is supported only until $end, $left days from now.** Plan the move to the next release: docs/operations.md says how ("Upgrade the NixOS release"; the nixpkgs line in \`nix/flake.nix\`)."
      else
        status=ok
        echo "Supported until $end ($left days from now)."
      fi
      echo
    fi
    echo "### What to review"
    echo
    echo "The checks of this pull request: CI (the tests and \`nix flake check\`), and the preview's two comments:"
    echo "\`pulumi preview\` (a changed system is an update of the deploy) and the NixOS closure diff (every package"
    echo "that changes on the server, with its version). Merging deploys it; a deploy that fails its health check rolls back."
  } >"$body_tmp"
  had_changes=$changed
  eos_status=$status
}

main() {
  parse_args "$@"
  local before lock_before=
  before=$(sha256sum <"$flake_dir/flake.nix")
  [[ -f $flake_dir/flake.lock ]] && lock_before=$(sha256sum <"$flake_dir/flake.lock")
  body_tmp=$(mktemp)
  # shellcheck disable=SC2064 # expand now: the path is fixed
  trap "rm -f '$body_tmp' '$flake_dir/flake.nix.new' '$flake_dir/flake.lock.before'" EXIT

  update_inputs
  lock_inputs
  lock_state=same
  if [[ -f $flake_dir/flake.lock && -z $lock_before ]]; then
    lock_state=created
  elif [[ -f $flake_dir/flake.lock && $(sha256sum <"$flake_dir/flake.lock") != "$lock_before" ]]; then
    lock_state=updated
  fi
  write_body
  local changed=false
  if [[ $(sha256sum <"$flake_dir/flake.nix") != "$before" || $lock_state != same || $had_changes == 1 ]]; then
    changed=true
  fi
  if [[ -n $body_file ]]; then cp "$body_tmp" "$body_file"; else cat "$body_tmp"; fi
  if [[ -n ${GITHUB_OUTPUT:-} ]]; then
    {
      echo "changed=$changed"
      echo "end-of-support=$eos_status"
    } >>"$GITHUB_OUTPUT"
  fi
  step "changed: $changed; end of support: $eos_status"
}

main "$@"
