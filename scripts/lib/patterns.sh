# shellcheck shell=bash
# The exact forms of the values the deploy passes between this machine and the
# host: one definition, read by deploy.sh (and the other scripts, through
# common.sh) and by target-shim.sh (deploy.sh sends this file ahead of the
# shim's text; the shim run by hand reads it from lib/). Sourced, never
# executed.
#
# Every bracket expression spells its characters out: a range such as a-z
# depends on the locale's collation in a POSIX regex, a list does not.

# A Nix store path: /nix/store/<32 characters of Nix's base32 (no e, o, u, t)>-<name>,
# the name in the characters Nix allows. The same as STORE_PATH in src/config.ts
# (tests/unit/patterns.test.ts checks both on the same samples).
# shellcheck disable=SC2034 # used by the files that source this one
store_path_re='^/nix/store/[0123456789abcdfghijklmnpqrsvwxyz]{32}-[ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+._?=-]+$'

# A systemd unit name: systemd's characters (letters, digits, ':', '_', '.', '\',
# '-', '@' for templates), not starting with '-' (it would read as an option),
# at most 255 characters, ending in a unit type's suffix (systemd.unit(5)).
# shellcheck disable=SC2034
unit_name_re='^[ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.@\][ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.@\-]{0,244}[.](service|socket|device|mount|automount|swap|target|path|timer|slice|scope)$'

# A host secret's name (HOST_SECRETS), as the stack config accepts it.
# shellcheck disable=SC2034
secret_name_re='^[ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz][ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_]{0,63}$'

# A device path as a disk's name in the host facts or on a server: /dev/ and
# plain characters (it travels to the server inside a command).
# shellcheck disable=SC2034
device_path_re='^/dev/[ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:+@/-]+$'

# all_lines_match RE [FILE]: every line of FILE (stdin without one) matches RE;
# otherwise prints the first line that does not and fails (as when grep fails).
# One grep for thousands of lines (a closure's store paths), byte by byte: a
# bash regex per line costs about 20 ms per 300 lines.
all_lines_match() {
  local status=0
  LC_ALL=C grep -avE -m 1 -- "$1" "${@:2}" || status=$?
  ((status == 1))
}

# A count of bytes or a generation: digits without a leading zero (bash reads
# 010 as octal), at most 18 of them (below 2^63, bash's integers).
# shellcheck disable=SC2034
uint_re='^(0|[123456789][0123456789]{0,17})$'

# Who ran a deploy, as the host records it (/var/lib/blog-deploy/last, by=):
# $GITHUB_ACTOR or $USER, in the characters of a GitHub login or a Unix user
# name (anything else is replaced by '_' before it is sent), at most 64.
# shellcheck disable=SC2034
deployer_re='^[ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@+-]{1,64}$'
