{
  description = "NixOS host that serves the blog backend over HTTPS on Hetzner Cloud";

  # nixpkgs follows a release branch and nix/flake.lock pins its commit; the
  # other inputs are pinned by revision in their URLs.
  inputs = {
    # NixOS release: the one line to change. nixos-26.11 ("Zokor") is the
    # channel branch of release-26.11: it only moves when Hydra's tests of the
    # release pass, and `nix flake update nixpkgs` moves the lock within it.
    # No nixos-26.11 commit could be confirmed from the public sources readable
    # when this was written (the newest seen: raw.githubusercontent.com
    # NixOS/nixpkgs release-26.11 nixos/doc/manual/release-notes/
    # rl-2611.section.md, still "2026.11/??"; nixpkgs-unstable channels up to
    # 26.11pre1109744.4fe25e12eb9f, 2026-11-06), so the commit is the one the
    # lock file records. A deploy never resolves it (deploy.yml refuses without
    # nix/flake.lock). system.stateVersion (nix/modules/upkeep.nix) stays 26.05:
    # it names the release the host's state was created with, not the one it runs.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.11";

    # update: tag v1.13.0 within v1.*
    disko = {
      url = "github:nix-community/disko/de5708739256238fb912c62f03988815db89ec9a";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # update: tag 1.13.0 within 1.*
    nixos-anywhere = {
      url = "github:nix-community/nixos-anywhere/bad98b0685cf47eaeadcaf6787da8b51cf025693";
      inputs.nixpkgs.follows = "nixpkgs";
      # nixos-anywhere uses disko only for its own tests; share ours.
      inputs.disko.follows = "disko";
    };

    # The service this host runs: `packages.<system>.default`, binary `quick-start`.
    # Its nixpkgs is deliberately NOT made to follow ours: it is built with a
    # 2023 crane (`crane.lib.<system>`) that is pinned by the backend's own
    # flake.lock and expects the nixpkgs locked next to it.
    # Swap it with one line here, or with `--override-input backend <flake-ref>`.
    backend.url = "github:FlakM/backend/16b7fe52db02456a4549960cf9d9b14a3fe31239";
  };

  outputs =
    { self, nixpkgs, ... }@inputs:
    let
      inherit (nixpkgs) lib;
      # Where the operator's tools (dev shell, nixos-anywhere, formatter) run.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # A NixOS system from a host file. The host file sets the facts
      # (config.blog.host) and imports the shared modules.
      mkHost =
        hostFile:
        lib.nixosSystem {
          specialArgs = { inherit inputs; };
          modules = [
            hostFile
            # The platform comes from the host facts. It is set here, not in a
            # shared module, so the VM test can keep the test framework's
            # read-only pkgs (which owns nixpkgs.hostPlatform).
            (
              { config, ... }:
              {
                nixpkgs.hostPlatform = config.blog.host.system;
              }
            )
          ];
        };
    in
    {
      nixosConfigurations = {
        blog = mkHost ./hosts/blog.nix;
        # Hetzner cax (Arm) servers: the same host with another platform.
        blog-arm = mkHost ./hosts/blog-arm.nix;
        # The example host as a local QEMU VM (hosts/blog-vm.nix): `nix run ./nix#vm`.
        blog-vm = mkHost ./hosts/blog-vm.nix;
      };

      packages = lib.recursiveUpdate (forAllSystems (pkgs: {
        nixos-anywhere = inputs.nixos-anywhere.packages.${pkgs.stdenv.hostPlatform.system}.nixos-anywhere;
      })) {
        # The VM runner (nixpkgs qemu-vm.nix system.build.vm; its meta.mainProgram is
        # run-blog-vm-vm): `nix run ./nix#vm`. x86_64-linux with KVM.
        x86_64-linux.vm = self.nixosConfigurations.blog-vm.config.system.build.vm;
      };

      # `nix flake check ./nix` is the whole proof on x86_64-linux: it builds the
      # x86 host and runs the VM test. The Arm host's check runs on an
      # aarch64-linux machine (or with `nix flake check --all-systems` and an
      # aarch64 builder).
      checks = {
        x86_64-linux = {
          vm = nixpkgs.legacyPackages.x86_64-linux.testers.runNixOSTest (
            import ./tests/vm.nix { inherit inputs; }
          );
          blog = self.nixosConfigurations.blog.config.system.build.toplevel;
        };
        aarch64-linux.blog-arm = self.nixosConfigurations.blog-arm.config.system.build.toplevel;
      };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShellNoCC {
          packages = [
            pkgs.nodejs_22
            pkgs.pulumi-bin
            self.packages.${pkgs.stdenv.hostPlatform.system}.nixos-anywhere
            pkgs.openssh
            pkgs.jq
            pkgs.curl
            # The preview asks the backup repository for its newest snapshot (scripts/backup-status.sh).
            pkgs.restic
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
