# Checks that need no nixpkgs and no network (run by tests/offline.sh):
# the host facts the example host sets match the options host-facts.nix
# declares, the secrets' names follow the contract with the deploy and the
# stack, and the VM test's Python renders (printed for a syntax check).
let
  # Just enough of nixpkgs' lib to read host-facts.nix's declarations.
  stubLib = {
    mkOption = declaration: declaration;
    types = {
      strMatching = pattern: {
        name = "strMatching";
        inherit pattern;
      };
      enum = values: {
        name = "enum";
        inherit values;
      };
      listOf = elemType: {
        name = "listOf";
        inherit elemType;
      };
      singleLineStr = {
        name = "singleLineStr";
      };
      nullOr = elemType: {
        name = "nullOr";
        inherit elemType;
      };
      bool = {
        name = "bool";
      };
    };
  };

  declared = (import ../modules/host-facts.nix { lib = stubLib; }).options.blog.host;
  host = import ../hosts/blog.nix;
  facts = host.blog.host;
  secretNames = import ../modules/secret-names.nix;

  contractNames = [
    "acmeEmail"
    "adminSshKeys"
    "dataVolume"
    "disk"
    "domain"
    "platform"
    "system"
    "tls"
  ];

  # The secrets a host declares (config.blog.secrets' names, what the stack
  # reads with nix eval): its backend's, plus the origin certificate's three
  # behind Cloudflare (nix/modules/backend.nix, web.nix).
  originSecretNames = builtins.attrValues secretNames.cloudflareOrigin;
  declaredSecrets =
    tls: builtins.sort builtins.lessThan (
      host.services.blog-backend.secrets
      ++ (if tls == "cloudflare-origin" then originSecretNames else [ ])
    );
  isSecretName = name: builtins.match secretNames.namePattern name != null;
  nameOfLength = n: builtins.concatStringsSep "" (builtins.genList (_: "a") n);
  placeholderKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA PLACEHOLDER-replace-with-your-own-key";

  # The host units the deploy depends on, as data (nix/modules/units/): what the
  # NixOS modules build their units from and the test systems render.
  units = {
    resolve = import ../modules/units/secrets-resolve.nix;
    data = import ../modules/units/data.nix;
    credentials = import ../modules/units/credentials.nix;
  };

  matches = pattern: value: builtins.match pattern value != null;
  singleLine = value: builtins.match ".*[\n\r].*" value == null;

  checks = {
    "host-facts.nix declares exactly the contract's options" =
      builtins.attrNames declared == contractNames;
    "every fact has a description and an example" = builtins.all (
      name: declared.${name} ? description && declared.${name} ? example
    ) contractNames;
    "the example host sets exactly the contract's facts" = builtins.attrNames facts == contractNames;
    "the example domain is a lower-case FQDN without a trailing dot" =
      matches declared.domain.type.pattern facts.domain && facts.domain == "example.com";
    "the domain pattern refuses a trailing dot and upper case" =
      !(matches declared.domain.type.pattern "example.com.")
      && !(matches declared.domain.type.pattern "Example.com");
    "the example e-mail is an address" = matches declared.acmeEmail.type.pattern facts.acmeEmail;
    "the example keys are the contract's placeholder, one line each" =
      facts.adminSshKeys == [ placeholderKey ] && builtins.all singleLine facts.adminSshKeys;
    "the example system is one the option allows" =
      builtins.elem facts.system declared.system.type.values && facts.system == "x86_64-linux";
    "the example host is a Hetzner Cloud server, the platform's default" =
      builtins.elem facts.platform declared.platform.type.values
      && facts.platform == "hetzner-cloud"
      && declared.platform.default == "hetzner-cloud";
    "the example host leaves the disk to the platform (the server's own disk on Hetzner Cloud)" =
      facts.disk == null && declared.disk.default == null;
    "the disk pattern takes stable names only" =
      matches declared.disk.type.elemType.pattern "/dev/disk/by-id/nvme-Samsung_SSD_980_S1"
      && !(matches declared.disk.type.elemType.pattern "/dev/sda");
    "tls is acme (the default) or cloudflare-origin; the example host uses acme" =
      declared.tls.type.values == [
        "acme"
        "cloudflare-origin"
      ]
      && declared.tls.default == "acme"
      && facts.tls == "acme";
    "dataVolume is a boolean, off by default and off on the example host" =
      declared.dataVolume.type.name == "bool"
      && declared.dataVolume.default == false
      && facts.dataVolume == false;
    "a secret's name is ^[A-Za-z][A-Za-z0-9_]{0,63}$" =
      builtins.all isSecretName [
        "backendApiKey"
        "a"
        "B_2"
        (nameOfLength 64)
      ]
      && !(builtins.any isSecretName [
        ""
        "1a"
        "_a"
        "a-b"
        "a.b"
        "a b"
        (nameOfLength 65)
      ]);
    "secrets are delivered to /var/lib/blog-secrets" = secretNames.directory == "/var/lib/blog-secrets";
    "the example host declares one secret, backendApiKey" = declaredSecrets facts.tls == [ "backendApiKey" ];
    "behind Cloudflare the host also declares the origin certificate, its key and the real-IP ranges" =
      declaredSecrets "cloudflare-origin" == [
        "backendApiKey"
        "cloudflareOriginCert"
        "cloudflareOriginKey"
        "cloudflareRealIp"
      ];
    "every declared secret's name follows the contract" = builtins.all isSecretName (
      declaredSecrets "cloudflare-origin"
    );
    "the settle unit runs once per boot, before sysinit.target, and no switch restarts it" =
      units.resolve.wantedBy == [ "sysinit.target" ]
      && units.resolve.serviceConfig.RemainAfterExit
      && !units.resolve.restartIfChanged
      && !(units.resolve.unitConfig ? ConditionPathExists)
      && units.resolve.environment.SECRETS_STORE == secretNames.store;
    "the data volume is /data by label, nofail, and each state directory a bind mount that needs the unit making its source" =
      let
        fs = units.data.fileSystems [ "/var/lib/private/x" ];
      in
      fs."/data".device == "/dev/disk/by-label/blog-data"
      && builtins.elem "nofail" fs."/data".options
      && fs."/var/lib/private/x".device == "/data/var/lib/private/x"
      && fs."/var/lib/private/x".options == [
        "bind"
        "nofail"
        "x-systemd.requires=blog-data-dirs.service"
      ];
    "a credential is <name>:<the secret's path>; secret-units lists each secret's units by name" =
      units.credentials.loadCredential [ "backendApiKey" ] == [ "backendApiKey:/var/lib/blog-secrets/backendApiKey" ]
      && units.credentials.secretUnitsText {
        b = [ "x.service" ];
        a = [ ];
      } == "a\nb x.service\n";
  };

  failed = builtins.filter (name: !checks.${name}) (builtins.attrNames checks);

  # The VM test's script, rendered with stand-in node values.
  vmTest = import ./vm.nix {
    inputs.nixpkgs = "/nix/store/nixpkgs";
    scripts = "/nix/store/blog-scripts";
  } { lib = { }; };
  standInSystem = name: "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-nixos-system-blog-${name}";
  specialisationOf = name: {
    configuration.system.build.toplevel = standInSystem name;
  };
  secretsAt = names: builtins.listToAttrs (
    map (name: {
      inherit name;
      value.path = "${secretNames.directory}/${name}";
    }) names
  );
  testScript = vmTest.testScript {
    nodes = {
      blog = {
        blog.host.domain = facts.domain;
        blog.secrets = secretsAt (declaredSecrets "acme");
        networking.primaryIPAddress = "192.168.1.2";
        services.nginx.virtualHosts.${facts.domain}.acmeRoot = null;
        programs.ssh.package = "/nix/store/openssh";
        system.build.toplevel = standInSystem "first";
        specialisation = {
          next = specialisationOf "next";
          broken = specialisationOf "broken";
        };
      };
      proxied = {
        blog.secrets = secretsAt (declaredSecrets "cloudflare-origin");
        networking.primaryIPAddress = "192.168.1.3";
      };
      client.networking.primaryIPAddress = "192.168.1.4";
      acme = {
        networking.primaryIPAddress = "192.168.1.1";
        test-support.acme = {
          caDomain = "acme.test";
          caCert = "/nix/store/ca.cert.pem";
        };
      };
    };
  };
in
if failed == [ ] then
  testScript
else
  throw "offline checks failed:\n  ${builtins.concatStringsSep "\n  " failed}"
