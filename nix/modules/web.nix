# The public face: nginx terminates HTTPS for the domain from the host facts
# and proxies to the backend on loopback. The certificate comes from
# Let's Encrypt by HTTP-01, so port 80 stays open for the challenge and
# redirects everything else to HTTPS.
{ config, lib, ... }:
let
  backend = config.services.blog-backend;
in
{
  services.blog-backend = {
    enable = true;
    domain = config.blog.host.domain;
  };

  security.acme = {
    acceptTerms = true;
    defaults.email = config.blog.host.acmeEmail;
  };

  # The first certificate order runs once, at boot. Should it fail (the CA
  # not yet seeing the new DNS records, a CA hiccup), the acme module would
  # only try again with its daily renewal timer, and nginx would serve its
  # self-signed placeholder until then. Retry the order every 15 minutes.
  systemd.services."acme-order-renew-${backend.domain}".serviceConfig = {
    Restart = "on-failure";
    RestartSec = lib.mkDefault 900;
  };

  services.nginx = {
    enable = true;
    recommendedProxySettings = true;
    recommendedTlsSettings = true;
    recommendedGzipSettings = true;
    recommendedOptimisation = true;

    virtualHosts.${backend.domain} = {
      # forceSSL answers /.well-known/acme-challenge/ on port 80 and
      # redirects every other HTTP request to HTTPS.
      forceSSL = true;
      enableACME = true;
      locations."/".proxyPass = "http://127.0.0.1:${toString backend.port}";
    };
  };
}
