# shellcheck shell=bash
# Appended by tests/integration/deploy-hostile.test.ts to a copy of
# scripts/target-shim.sh, in place of its last line (main "$@"), after
# `hostile_rules=<base64>`: a target whose shim answers with hostile values.
# `serve` reads the requests through hostile_record, which writes the current
# verb to a file, and its replies go through hostile_rewrite, which applies
# the rules ("<verb> <mode> <key> <base64 of a line>", one a line):
#   replace  every line <key>=... of that verb's reply becomes the line
#   inject   the line is added before that verb's status line
#   status   the status line becomes the line
# The rules are base64 in the text, so the target's bash never parses them.
# hostile_main is what the copy runs instead of main.

# shellcheck disable=SC2154 # hostile_rules is set by the test, above this text
hostile_verbs=" begin survey boot-needed realise prepare activate failed-units commit rollback status secrets-hashes secrets-deliver secrets-restart end "
hostile_record() {
  local line word
  while IFS= read -r line; do
    word=${line%% *}
    [[ $hostile_verbs != *" $word "* ]] || printf '%s' "$word" >"$1"
    printf '%s\n' "$line"
  done
}
hostile_rewrite() {
  local line verb rule r_verb r_mode r_key r_line
  while IFS= read -r line; do
    verb=$(cat "$1" 2>/dev/null || true)
    while IFS= read -r rule; do
      [[ -n $rule ]] || continue
      IFS=' ' read -r r_verb r_mode r_key r_line <<<"$rule"
      [[ $r_verb == "$verb" ]] || continue
      r_line=$(printf '%s' "$r_line" | base64 -d)
      case $r_mode in
      replace) [[ $line != "$r_key="* ]] || line=$r_line ;;
      inject) [[ $line != '@@ '* ]] || printf '%s\n' "$r_line" ;;
      status) [[ $line != '@@ '* ]] || line=$r_line ;;
      esac
    done <<<"$(printf '%s' "$hostile_rules" | base64 -d)"
    printf '%s\n' "$line"
  done
}
hostile_main() {
  if [[ ${1:-} != serve ]]; then
    main "$@"
    return
  fi
  local verb_file
  verb_file=$(mktemp /tmp/blog-hostile-verb.XXXXXX)
  hostile_record "$verb_file" | main serve | hostile_rewrite "$verb_file"
  rm -f "$verb_file"
}
