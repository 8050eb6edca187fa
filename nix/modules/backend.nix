# services.blog-backend: the blog's HTTP backend as a sandboxed systemd service.
# The pinned backend (github:FlakM/backend, an axum hello world) binds
# 127.0.0.1:3000 in its own code and reads no environment; `port` tells the
# proxy where to connect and is also exported as PORT for backends that honour it.
# Secrets reach it as systemd credentials (`secrets`, nix/modules/secrets.nix);
# its state (StateDirectory, under DynamicUser /var/lib/private/blog-backend)
# goes to the data volume when the host has one (nix/modules/data.nix).
{
  config,
  lib,
  pkgs,
  inputs,
  ...
}:
let
  cfg = config.services.blog-backend;
  secretNames = import ./secret-names.nix;
  credentials = import ./units/credentials.nix;
  # StateDirectory=blog-backend with DynamicUser=true lives in
  # /var/lib/private/blog-backend; /var/lib/blog-backend is a symlink to it
  # (systemd.exec(5), StateDirectory=). The data volume keeps the real one.
  stateDirectory = "/var/lib/private/blog-backend";
in
{
  options.services.blog-backend = {
    enable = lib.mkEnableOption "the blog backend";

    package = lib.mkOption {
      type = lib.types.package;
      default = inputs.backend.packages.${pkgs.stdenv.hostPlatform.system}.default;
      defaultText = lib.literalExpression "inputs.backend.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      example = lib.literalExpression "inputs.my-backend.packages.x86_64-linux.default";
      description = ''
        Package that provides the backend executable. Defaults to the `backend`
        input of the flake in nix/, so `--override-input backend <flake-ref>` swaps it.
      '';
    };

    executable = lib.mkOption {
      type = lib.types.str;
      default = "quick-start";
      example = "my-backend";
      description = "Name of the program in the package's `bin/` to run.";
    };

    port = lib.mkOption {
      type = lib.types.port;
      default = 3000;
      example = 8080;
      description = ''
        TCP port the backend listens on at 127.0.0.1. The pinned backend
        hard-codes 3000; change this only together with a backend that honours PORT.
      '';
    };

    domain = lib.mkOption {
      type = lib.types.str;
      example = "blog.example.org";
      description = "Public domain the backend is served under; the web module names the nginx virtual host after it.";
    };

    environment = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = {
        RUST_LOG = "info";
      };
      description = "Extra environment variables for the backend. Not for secrets: they end up in the Nix store; see `secrets`.";
    };

    secrets = lib.mkOption {
      type = lib.types.listOf (lib.types.strMatching secretNames.namePattern);
      default = [ ];
      example = [ "backendApiKey" ];
      description = ''
        Names of host secrets the backend reads. Each becomes
        `blog.secrets.<name>` (the stack must provide it; a new value restarts
        the backend) and a systemd credential of the service: the backend
        reads the file `$CREDENTIALS_DIRECTORY/<name>`, that is
        `/run/credentials/blog-backend.service/<name>`. Never in the
        environment, never in the Nix store.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    blog.secrets = lib.genAttrs cfg.secrets (name: {
      description = "Secret of the blog backend, read at $CREDENTIALS_DIRECTORY/${name}";
      restartUnits = [ "blog-backend.service" ];
    });

    # On the data volume when the host has one (nix/modules/data.nix), which
    # also keeps the backend from starting without it.
    blog.data.directories.${stateDirectory}.services = [ "blog-backend" ];

    systemd.services.blog-backend = {
      description = "Blog backend";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      # No start limit: StartLimitIntervalSec=0 in [Unit] (systemd.unit(5))
      # turns the rate limiting off, so Restart= below never gives up.
      unitConfig.StartLimitIntervalSec = 0;
      environment = {
        PORT = toString cfg.port;
      }
      // cfg.environment;

      serviceConfig = {
        ExecStart = lib.getExe' cfg.package cfg.executable;
        DynamicUser = true;
        StateDirectory = "blog-backend";
        # <name>:<path>: systemd copies each file, readable by root, into a
        # private directory of this unit at every start (systemd.exec(5),
        # LoadCredential=). A list: other modules may add their own.
        # (units/credentials.nix: the test systems' services take theirs the same way.)
        LoadCredential = credentials.loadCredential cfg.secrets;
        # Keep restarting a crashing backend, however often: systemd's
        # default start limit (5 starts in 10 s) would leave it failed for
        # good. The delay grows from 2 s to at most 60 s over 10 restarts
        # (RestartSteps/RestartMaxDelaySec, systemd.service(5), systemd >= 254).
        Restart = "on-failure";
        RestartSec = 2;
        RestartSteps = 10;
        RestartMaxDelaySec = 60;

        # Hardening
        # The backend only talks to nginx over loopback: no other address,
        # and in particular not the metadata service at 169.254.169.254.
        IPAddressDeny = "any";
        IPAddressAllow = "localhost";
        RestrictAddressFamilies = "AF_INET AF_INET6 AF_UNIX";
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        DevicePolicy = "closed";
        PrivateUsers = true;
        PrivateMounts = true;
        PrivateIPC = true;
        ProtectHostname = true;
        ProtectClock = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        RemoveIPC = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
          "~@resources"
        ];
        # A filtered call fails with EPERM instead of killing the process.
        SystemCallErrorNumber = "EPERM";
        UMask = "0077";
      };
    };
  };
}
