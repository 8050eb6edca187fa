#!/bin/sh
# A service of the test systems (closures.nix) that takes host secrets as
# credentials, as the backend does (LoadCredential=, nix/modules/units/
# credentials.nix): at every start it records what it got, the sha256 of each
# credential, in its runtime directory ($RUNTIME_DIRECTORY/record: gone when
# it stops), then runs until it is stopped. The tests read the record to see
# which values the running service has.
set -eu
record=${RUNTIME_DIRECTORY:?}/record
{
  echo "invocation=${INVOCATION_ID:-}"
  if [ -n "${CREDENTIALS_DIRECTORY:-}" ]; then
    for file in "$CREDENTIALS_DIRECTORY"/*; do
      [ -f "$file" ] || continue
      echo "credential=${file##*/} $(sha256sum <"$file" | cut -d' ' -f1)"
    done
  fi
} >"$record.new"
mv -f "$record.new" "$record"
exec sleep infinity
