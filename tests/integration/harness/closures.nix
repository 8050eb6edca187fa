# Fake NixOS system closures for the deploy tests, the e2e suite and the
# benchmark, built offline by plain Nix (builder /bin/sh, no nixpkgs), whose
# units run on the real systemd of a test target (target.sh). Like a NixOS
# toplevel, each has
#   bin/switch-to-configuration   switch-to-configuration.py, modelled on NixOS's
#   activate                      activate.sh (/etc and /run/current-system)
#   etc/systemd/system/           its units and <target>.wants/ links (the target
#                                 reads them as /etc/systemd/system.attached)
#   etc/fstab                     its mounts, as NixOS writes them
#   etc/blog/secret-units         what the deploy restarts when a secret changes
#   kernel, initrd, dependencies  (dependency paths shared between closures, so a
#                                 new closure only adds the paths that changed)
# Its units:
#   blog-web.service              the site (web-server.py): "blog ok <name>" on
#                                 80 and 443, or 503 when built unhealthy
#   blog-secrets-resolve.service  from nix/modules/units/secrets-resolve.nix
#   <service>.service             per entry of `services`: a service that takes
#                                 those host secrets as credentials (service.sh,
#                                 LoadCredential= from nix/modules/units/credentials.nix)
#   blog-data-dirs.service and the data mounts in fstab (dataVolume), from
#                                 nix/modules/units/data.nix
#   blog-broken.service           (fail) fails to start: the switch exits 4
#   sysinit-reactivation.target   as every NixOS system has it
#   `units`                       any others a test needs
# The unit files are written as NixOS's systemd-lib.nix writes them
# (serviceToUnit: [Unit] from the options, [Service] with Environment=, then
# X-RestartIfChanged=false when restartIfChanged is false, then serviceConfig).
#   nix-build closures.nix --argstr name a [--arg fail true] [--arg healthy false] ...
{
  name ? "system", # distinguishes closures (and the site's page)
  fail ? false, # a unit that fails to start: the switch exits 4
  healthy ? true, # the site answers 200 (or 503)
  deps ? 4, # number of dependency paths
  changedDep ? -1, # index of a dependency whose content differs (one-path change)
  blobBytes ? 0, # one extra dependency of this many bytes (space test)
  depBytes ? 0, # random bytes added to each dependency (benchmark)
  system ? builtins.currentSystem, # given explicitly when evaluated from a flake (pure)
  tls ? null, # the host's blog.host.tls: which certificate the site serves (null: acme)
  secrets ? [ ], # the backend's secrets: blog-backend.service takes them
  services ? null, # { <name> = [ <secret> ... ]; }: services taking secrets (default: the backend's)
  dataVolume ? false, # blog.host.dataVolume: the volume's mounts, the backend's state on it
  units ? { }, # { "<unit>" = { text = "..."; wantedBy = [ "<target>" ]; }; } more units
  fileSystems ? { }, # more fstab entries: { "<mount point>" = { device; fsType; options = [ ]; }; }
  modules ? ../../../nix/modules, # the NixOS modules' data (units/, secret-names.nix)
}:
let
  PATH = "/usr/bin:/bin";
  credentials = import (modules + "/units/credentials.nix");
  resolveUnit = import (modules + "/units/secrets-resolve.nix");
  data = import (modules + "/units/data.nix");
  originSecrets = builtins.attrValues (import (modules + "/secret-names.nix")).cloudflareOrigin;
  tlsMode = if tls == null then "acme" else tls;
  # StateDirectory=blog-backend of a DynamicUser= service (nix/modules/backend.nix).
  backendState = "/var/lib/private/blog-backend";

  concat = builtins.concatStringsSep "";
  toOption =
    v:
    if builtins.isBool v then
      (if v then "true" else "false")
    else
      toString v;
  # attrsToSection: one "Key=value" line per value (lists: one line each).
  section =
    attrs:
    concat (
      map (
        key:
        let
          v = attrs.${key};
        in
        concat (map (x: "${key}=${toOption x}\n") (if builtins.isList v then v else [ v ]))
      ) (builtins.attrNames attrs)
    );
  nonEmpty = key: list: if list == [ ] then { } else { ${key} = builtins.concatStringsSep " " list; };

  # A service unit from NixOS-style options; execStart may name @out@ (this closure).
  serviceText =
    d: execStart:
    ''
      [Unit]
    ''
    + section (
      { Description = d.description; }
      // nonEmpty "After" (d.after or [ ])
      // nonEmpty "Before" (d.before or [ ])
      // nonEmpty "Wants" (d.wants or [ ])
      // nonEmpty "Requires" (d.requires or [ ])
      // nonEmpty "Conflicts" (d.conflicts or [ ])
      // (d.unitConfig or { })
    )
    + ''

      [Service]
    ''
    + concat (map (n: "Environment=\"${n}=${d.environment.${n}}\"\n") (builtins.attrNames (d.environment or { })))
    + (if d.restartIfChanged or true then "" else "X-RestartIfChanged=false\n")
    + section ((d.serviceConfig or { }) // { ExecStart = execStart; });

  # name -> { text; wantedBy; script (a file, for a unit with `script`) }
  allUnits =
    {
      "blog-web.service" = {
        text = serviceText {
          description = "The site (test system ${name})";
          after = [ "network.target" ];
          serviceConfig = (
            if tlsMode == "cloudflare-origin" then
              { LoadCredential = credentials.loadCredential originSecrets; }
            else
              { }
          );
        } "/usr/bin/python3 @out@/share/blog-test/web-server.py --name ${name} --tls ${tlsMode}${if healthy then "" else " --unhealthy"}";
        wantedBy = [ "multi-user.target" ];
      };
      "blog-secrets-resolve.service" = {
        text = serviceText resolveUnit "@out@/share/blog-test/unit-scripts/blog-secrets-resolve-start";
        inherit (resolveUnit) wantedBy script;
      };
      "sysinit-reactivation.target" = {
        text = ''
          [Unit]
          Description=Reactivate sysinit units
        '';
        wantedBy = [ ];
      };
    }
    // builtins.listToAttrs (
      map (service: {
        name = "${service}.service";
        value = serviceUnit service serviceSecrets.${service};
      }) (builtins.attrNames serviceSecrets)
    )
    // (
      if dataVolume then
        {
          "${data.prepareUnit}.service" =
            let
              d = data.prepareService [ backendState ];
            in
            {
              text = serviceText d "@out@/share/blog-test/unit-scripts/${data.prepareUnit}-start";
              wantedBy = [ ];
              inherit (d) script;
            };
        }
      else
        { }
    )
    // (
      if fail then
        {
          "blog-broken.service" = {
            text = serviceText {
              description = "A unit of system ${name} that fails to start";
              serviceConfig.Type = "oneshot";
            } "/bin/false";
            wantedBy = [ "multi-user.target" ];
          };
        }
      else
        { }
    )
    // builtins.mapAttrs (_: u: { wantedBy = [ ]; } // u) units;

  # A service that takes host secrets (the backend, and whatever a test names).
  serviceUnit = service: taken: {
    text = serviceText {
      description = "Test service ${service} (takes host secrets as credentials)";
      after = [ "network.target" ];
      unitConfig = if dataVolume && service == "blog-backend" then { RequiresMountsFor = [ backendState ]; } else { };
      serviceConfig = {
        DynamicUser = true;
        RuntimeDirectory = "blog-test-${service}";
        LoadCredential = credentials.loadCredential taken;
      }
      // (if service == "blog-backend" then { StateDirectory = "blog-backend"; } else { });
    } "@out@/share/blog-test/service.sh";
    wantedBy = [ "multi-user.target" ];
  };

  serviceSecrets =
    if services != null then
      services
    else if secrets != [ ] then
      { blog-backend = secrets; }
    else
      { };

  # /etc/blog/secret-units: each secret's services, and the site's for the origin pair.
  restartUnits =
    builtins.foldl'
      (acc: service: builtins.foldl' (a: s: a // { ${s} = (a.${s} or [ ]) ++ [ "${service}.service" ]; }) acc serviceSecrets.${service})
      (if tlsMode == "cloudflare-origin" then builtins.listToAttrs (map (s: { name = s; value = [ "blog-web.service" ]; }) originSecrets) else { })
      (builtins.attrNames serviceSecrets);

  # /etc/fstab as NixOS writes it (nixos/modules/tasks/filesystems.nix,
  # makeFstabEntries: fsck pass 0 for bind mounts and "none", 2 for ext4).
  allFileSystems = (if dataVolume then data.fileSystems [ backendState ] else { }) // fileSystems;
  fstabEntry =
    mountPoint:
    let
      fs = allFileSystems.${mountPoint};
      skipCheck = builtins.elem fs.fsType [ "none" "tmpfs" ] || builtins.elem "bind" fs.options;
    in
    "${fs.device} ${mountPoint} ${fs.fsType} ${builtins.concatStringsSep "," fs.options} 0 ${if skipCheck then "0" else "2"}\n";
  fstab =
    ''
      # This is a generated file.  Do not edit!
      #
      # <file system> <mount point>   <type>  <options>       <dump>  <pass>

      # Filesystems.
    ''
    + concat (map fstabEntry (builtins.attrNames allFileSystems));

  files =
    map (unit: {
      path = "etc/systemd/system/${unit}";
      text = allUnits.${unit}.text;
    }) (builtins.attrNames allUnits)
    ++ [
      {
        path = "etc/fstab";
        text = fstab;
      }
      {
        path = "etc/blog/secret-units";
        text = credentials.secretUnitsText restartUnits;
      }
    ];
  wantsLinks = concat (
    map (
      unit: concat (map (target: "etc/systemd/system/${target}.wants/${unit} ../${unit}\n") allUnits.${unit}.wantedBy)
    ) (builtins.attrNames allUnits)
  );
  unitScripts = concat (
    map (unit: if allUnits.${unit} ? script then "${builtins.replaceStrings [ ".service" ] [ "" ] unit}-start ${allUnits.${unit}.script}\n" else "") (
      builtins.attrNames allUnits
    )
  );

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
in
derivation (
  {
    inherit
      system
      PATH
      dependencies
      wantsLinks
      unitScripts
      ;
    name = "nixos-system-${name}";
    builder = "/bin/sh";
    fileCount = builtins.length files;
    switchToConfiguration = ./switch-to-configuration.py;
    activate = ./activate.sh;
    webServer = ./web-server.py;
    service = ./service.sh;
    args = [
      "-c"
      ''
        set -e
        mkdir -p $out/bin $out/share/blog-test/unit-scripts $out/etc/systemd/system
        echo "$dependencies" > $out/dependencies
        # Where it was built: /etc/blog-test/target exists only inside a test target.
        if [ -e /etc/blog-test/target ]; then echo target > $out/built-on; else echo deployer > $out/built-on; fi
        head -c 8192 /dev/zero > $out/kernel
        head -c 16384 /dev/zero > $out/initrd
        cp $switchToConfiguration $out/bin/switch-to-configuration
        cp $activate $out/activate
        cp $webServer $out/share/blog-test/web-server.py
        cp $service $out/share/blog-test/service.sh
        chmod +x $out/bin/switch-to-configuration $out/activate $out/share/blog-test/service.sh
        i=0
        while [ "$i" -lt "$fileCount" ]; do
          eval "path=\$file''${i}Path text=\$file''${i}Text"
          mkdir -p "$out/''${path%/*}"
          printf '%s' "$text" | sed "s|@out@|$out|g" > "$out/$path"
          i=$((i + 1))
        done
        printf '%s' "$wantsLinks" | while read -r link target; do
          mkdir -p "$out/''${link%/*}"
          ln -s "$target" "$out/$link"
        done
        # A unit's script, as NixOS's makeJobScript writes it: bash -e.
        printf '%s' "$unitScripts" | while read -r script source; do
          { echo '#!/bin/bash -e'; cat "$source"; } > "$out/share/blog-test/unit-scripts/$script"
          chmod +x "$out/share/blog-test/unit-scripts/$script"
        done
      ''
    ];
  }
  // builtins.listToAttrs (
    builtins.concatLists (
      builtins.genList (i: [
        {
          name = "file${toString i}Path";
          value = (builtins.elemAt files i).path;
        }
        {
          name = "file${toString i}Text";
          value = (builtins.elemAt files i).text;
        }
      ]) (builtins.length files)
    )
  )
)
