# shellcheck shell=bash
# Appended by tests/integration/deploy-hostile.test.ts to a copy of
# scripts/target-shim.sh, in place of its last line (main "$@"), after
# `hostile_rules=<base64>`: a target whose shim answers with hostile values.
# `serve` reads the requests through hostile_record, which appends each
# request's verb to a queue file (one a line, in the order they come: the
# deployer may send a batch before it reads the replies; "if-ok VERB" counts
# as VERB; a payload is passed on unread), and its replies go through
# hostile_rewrite, which applies the rules to the reply of the verb at the
# head of the queue and moves on at each status line. The rules are
# "<verb> <mode> <key> <base64 of a line>", one a line:
#   replace  every line <key>=... of that verb's reply becomes the line
#   inject   the line is added before that verb's status line
#   status   the status line becomes the line
# The rules are base64 in the text, so the target's bash never parses them.
# hostile_main is what the copy runs instead of main.

# shellcheck disable=SC2154 # hostile_rules is set by the test, above this text
hostile_verbs=" begin import survey boot-needed realise prepare activate failed-units commit rollback status secrets-hashes secrets-deliver secrets-restart acme-state acme-order end "
# The verbs whose first argument is the size in bytes of a payload that follows the request line.
hostile_payload_verbs=" survey secrets-deliver commit import "
hostile_record() {
  local LC_ALL=C line word words=()
  while IFS= read -r line; do
    printf '%s\n' "$line"
    read -r -a words <<<"${line#if-ok }"
    word=${words[0]:-}
    [[ $hostile_verbs == *" $word "* ]] || continue
    printf '%s\n' "$word" >>"$1"
    [[ $hostile_payload_verbs == *" $word "* && ${words[1]:-} =~ ^[0-9]+$ ]] || continue
    # Byte-exact (an import's payload is binary): read reads no further than a line.
    head -c "${words[1]}"
  done
}
hostile_rewrite() {
  local line verb rule r_verb r_mode r_key r_line replied=0 is_status
  while IFS= read -r line; do
    verb=$(sed -n "$((replied + 1))p" "$1" 2>/dev/null || true)
    is_status=0
    [[ $line != '@@ '* ]] || is_status=1
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
    ((is_status == 0)) || replied=$((replied + 1))
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
