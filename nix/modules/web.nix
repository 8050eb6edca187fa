# The public face: nginx terminates HTTPS for the domain from the host facts
# and proxies to the backend on loopback. Port 80 redirects to HTTPS in both
# modes of blog.host.tls:
#   acme               the certificate comes from Let's Encrypt by HTTP-01, so
#                      port 80 also answers the challenge;
#   cloudflare-origin  the site is behind Cloudflare's proxy: nginx serves a
#                      Cloudflare Origin CA certificate that the stack
#                      delivers as host secrets, takes the client's address
#                      from CF-Connecting-IP, and no ACME runs at all.
#
# How the secrets reach nginx (nixpkgs nixos/modules/services/web-servers/
# nginx/default.nix, read in its 2026 master version, which release-26.11
# branched from; no nixos-26.11 commit was available to read):
#   - nginx runs as User=nginx, not root. A credential (LoadCredential=) is
#     readable by the unit's user, so the root-only files in
#     /var/lib/blog-secrets reach it as /run/credentials/nginx.service/<name>,
#     the path systemd.exec(5) gives for configuration files that cannot
#     expand $CREDENTIALS_DIRECTORY.
#   - The module sets no LoadCredential=; serviceConfig values that are lists
#     are concatenated across modules (nixos/lib/systemd-unit-options.nix,
#     unitOption), so this list adds to whatever else sets one.
#   - Build-time validation (services.nginx.validateConfigFile, on by
#     default) runs gixy over the generated file (pkgs.writers.
#     writeNginxConfig). gixy does not read certificates, and an `include`
#     of a file that does not exist at build time is a logged warning, not a
#     failure (gixy parser _resolve_file_include; cli/main.py fails only on
#     an invalid configuration or a found issue).
#   - `nginx -t` runs at start, in ExecStartPre (the module's preStart),
#     inside the unit: systemd writes the credentials before the first
#     ExecStartPre command (src/core/service.c, service_enter_start_pre:
#     EXEC_WRITE_CREDENTIALS), so the test reads the real files.
#   - Credentials are copied when the unit starts and stay as they are while
#     it runs (systemd.io/CREDENTIALS: "immutable during the service
#     runtime"). ExecReload (`nginx -t`, then SIGHUP) would re-read the same
#     copies, so a new secret needs a restart: restartUnits below.
{ config, lib, ... }:
let
  backend = config.services.blog-backend;
  facts = config.blog.host;
  origin = (import ./secret-names.nix).cloudflareOrigin;
  credential = name: "/run/credentials/nginx.service/${name}";
  originSecrets = {
    ${origin.cert} = "Cloudflare Origin CA certificate for the domain (PEM), served by nginx";
    ${origin.key} = "Private key of the Cloudflare Origin CA certificate (PEM)";
    ${origin.realIp} = "nginx `set_real_ip_from <cidr>;` lines for Cloudflare's current IPv4 and IPv6 ranges";
  };
in
{
  config = lib.mkMerge [
    {
      services.blog-backend = {
        enable = true;
        domain = facts.domain;
      };

      services.nginx = {
        enable = true;
        recommendedProxySettings = true;
        recommendedTlsSettings = true;
        recommendedGzipSettings = true;
        recommendedOptimisation = true;

        virtualHosts.${backend.domain} = {
          # A second server block on port 80 that redirects every request to
          # HTTPS (with ACME, except /.well-known/acme-challenge/).
          forceSSL = true;
          locations."/".proxyPass = "http://127.0.0.1:${toString backend.port}";
        };
      };
    }

    (lib.mkIf (facts.tls == "acme") {
      security.acme = {
        acceptTerms = true;
        defaults.email = facts.acmeEmail;
      };

      services.nginx.virtualHosts.${backend.domain}.enableACME = true;

      # The first certificate order runs once, at boot. Should it fail (the CA
      # not yet seeing the new DNS records, a CA hiccup), the acme module would
      # only try again with its daily renewal timer, and nginx would serve its
      # self-signed placeholder until then. The module's order unit already
      # means to retry every 15 minutes: its serviceConfig sets
      # `RestartSec = 15 * 60` ("Let's Encrypt Failed Validation Limit allows 5
      # retries per hour"), but no Restart=, so systemd never restarts it and
      # the interval never applies (nixpkgs nixos/modules/security/acme/
      # default.nix, 2026 master: orderRenewService; systemd.service(5): a
      # oneshot may have Restart=on-failure). Restart= is all it lacks. (The
      # `RestartSec = lib.mkDefault 900` this line replaces never counted: a
      # unit option's definitions are filtered to the highest priority before
      # they merge, nixos/lib/systemd-unit-options.nix unitOption, and the
      # module's plain definition outranks a mkDefault.)
      systemd.services."acme-order-renew-${backend.domain}".serviceConfig.Restart = "on-failure";

      # The unit above exists only while the certificate is named after the
      # domain, which is how the nginx module names it (certName: useACMEHost,
      # else serverName, else the virtual host's name) and the acme module its
      # units (acme-order-renew-<cert>); anything else would leave an orphan
      # unit that holds nothing but Restart=.
      assertions = [
        {
          assertion = config.security.acme.certs ? ${backend.domain};
          message = "web.nix: expected the ACME certificate security.acme.certs.\"${backend.domain}\" that nginx's enableACME declares for the domain; acme-order-renew-${backend.domain}.service would not be the certificate's order unit.";
        }
      ];
    })

    (lib.mkIf (facts.tls == "cloudflare-origin") {
      blog.secrets = lib.mapAttrs (name: description: {
        inherit description;
        restartUnits = [ "nginx.service" ];
      }) originSecrets;

      systemd.services.nginx.serviceConfig.LoadCredential = map (
        name: "${name}:${config.blog.secrets.${name}.path}"
      ) (builtins.attrNames originSecrets);

      services.nginx = {
        virtualHosts.${backend.domain} = {
          # Strings, not Nix paths: nothing is copied into the store.
          sslCertificate = credential origin.cert;
          sslCertificateKey = credential origin.key;
        };

        # Inside http { }, before the server blocks. Cloudflare connects from
        # its own ranges and passes the visitor's address in CF-Connecting-IP;
        # the realip module (built into nixpkgs' nginx) puts it in
        # $remote_addr, for the log and the backend's X-Real-IP, only for
        # connections from the listed ranges.
        commonHttpConfig = ''
          real_ip_header CF-Connecting-IP;
          include ${credential origin.realIp};
        '';
      };
    })
  ];
}
