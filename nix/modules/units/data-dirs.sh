# shellcheck shell=bash
# blog-data-dirs.service (data.nix): the bind sources on the data volume,
# before the bind mounts need them, each with the mode and owner of its
# root-disk counterpart where that exists (else 0755 root): systemd would
# create a missing source with 0755 for it and its parents, but
# /data/var/lib/private must be 0700 like /var/lib/private (see
# nix/modules/data.nix). Environment: DATA_MOUNT, DATA_DIRECTORIES (absolute
# paths, separated by spaces).
mount_point=${DATA_MOUNT:?}
# Never create the sources on the root disk, under an empty mount point.
mountpoint -q "$mount_point"
install -d -m 0700 -o root -g root /var/lib/private
# shellcheck disable=SC2086 # split on purpose: the directories hold no whitespace
for dir in ${DATA_DIRECTORIES:-}; do
  path=""
  IFS=/ read -ra parts <<<"${dir#/}"
  for part in "${parts[@]}"; do
    path="$path/$part"
    [ -d "$mount_point$path" ] && continue
    if [ -d "$path" ]; then
      install -d -m "$(stat -c %a "$path")" -o "$(stat -c %u "$path")" \
        -g "$(stat -c %g "$path")" "$mount_point$path"
    else
      install -d -m 0755 -o root -g root "$mount_point$path"
    fi
  done
done
