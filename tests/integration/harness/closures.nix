# Fake NixOS system closures for the deploy tests and the benchmark, built
# offline by plain Nix (builder /bin/sh, no nixpkgs). Like a NixOS toplevel,
# each has bin/switch-to-configuration, kernel and initrd, and depends on
# other store paths (shared between closures, so a new closure only adds the
# paths that changed).
#   nix-build closures.nix --argstr name a [--arg fail true] [--arg healthy false] ...
{
  name ? "system", # distinguishes closures (and the health page's content)
  fail ? false, # switch-to-configuration switches, then fails (exit 4)
  healthy ? true, # activation turns the health page on (or off)
  deps ? 4, # number of dependency paths
  changedDep ? -1, # index of a dependency whose content differs (one-path change)
  blobBytes ? 0, # one extra dependency of this many bytes (space test)
  depBytes ? 0, # random bytes added to each dependency (benchmark)
  system ? builtins.currentSystem, # given explicitly when evaluated from a flake (pure)
  tls ? null, # the host's blog.host.tls: activation tells the web server which certificate to serve
}:
let
  PATH = "/usr/bin:/bin";
  dep =
    i:
    derivation {
      inherit system PATH;
      name = "blog-dep-${toString i}";
      builder = "/bin/sh";
      args = [
        "-c"
        "echo dependency ${toString i} ${if i == changedDep then "changed" else ""} > $out; head -c ${toString depBytes} /dev/urandom >> $out"
      ];
    };
  blob = derivation {
    inherit system PATH;
    name = "blog-blob-${toString blobBytes}";
    builder = "/bin/sh";
    args = [
      "-c"
      "head -c ${toString blobBytes} /dev/zero > $out"
    ];
  };
  dependencies = builtins.genList dep deps ++ (if blobBytes > 0 then [ blob ] else [ ]);
  switchScript = ''
    #!/bin/sh
    # Fake switch-to-configuration: like NixOS's, "test" points
    # /run/current-system at this closure (records it, turns the health page
    # on or off), "boot" makes it the boot default (/boot/default-system,
    # which target.sh's simulated reboot starts), "switch" does both.
    set -e
    case "$1" in
      switch | test | boot) ;;
      *) echo "switch-to-configuration: unsupported action '$1'" >&2; exit 1 ;;
    esac
    if [ "$1" != test ]; then
      ln -sfn @out@ /boot/default-system
      [ "$1" = switch ] || exit 0
    fi
    ln -sfn @out@ /run/current-system
    echo @name@ > /run/blog-activated
    # As nginx's configuration would: which certificate the site serves.
    if [ -n "@tls@" ]; then echo "@tls@" > /run/blog-health/tls; else rm -f /run/blog-health/tls; fi
    if [ @fail@ = 1 ]; then
      rm -f /run/blog-health/health.txt
      echo "switch-to-configuration: starting blog.service failed" >&2
      exit 4
    fi
    if [ @healthy@ = 1 ]; then
      echo "blog ok @name@" > /run/blog-health/health.txt
    else
      rm -f /run/blog-health/health.txt
    fi
  '';
in
derivation {
  inherit system PATH switchScript;
  name = "nixos-system-${name}";
  builder = "/bin/sh";
  dependencies = dependencies;
  args = [
    "-c"
    ''
      set -e
      mkdir -p $out/bin
      echo "$dependencies" > $out/dependencies
      # Where it was built: /run/blog-health exists only inside a test target.
      if [ -d /run/blog-health ]; then echo target > $out/built-on; else echo deployer > $out/built-on; fi
      head -c 8192 /dev/zero > $out/kernel
      head -c 16384 /dev/zero > $out/initrd
      printf '%s' "$switchScript" | sed -e "s|@out@|$out|g" -e "s|@name@|${name}|g" \
        -e "s|@fail@|${if fail then "1" else "0"}|g" -e "s|@healthy@|${if healthy then "1" else "0"}|g" \
        -e "s|@tls@|${if tls == null then "" else tls}|g" \
        > $out/bin/switch-to-configuration
      chmod +x $out/bin/switch-to-configuration
    ''
  ];
}
