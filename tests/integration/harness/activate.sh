#!/bin/sh
# $out/activate of the test systems (closures.nix copies this file into each),
# run by their switch-to-configuration between its stops and its starts, as
# NixOS's activation script is: /etc of the new system (its unit directory,
# which the target reads as /etc/systemd/system.attached, and its fstab) and
# /run/current-system point at it. Each link is replaced in one rename(2).
set -eu
out=$1

swap() {
  ln -sfn "$1" "$2.blog-new"
  mv -fT "$2.blog-new" "$2"
}

swap "$out/etc/systemd/system" /etc/systemd/system.attached
swap "$out/etc/fstab" /etc/fstab
swap "$out" /run/current-system
