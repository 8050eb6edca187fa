# The public face: nginx terminates HTTPS for the domain from the host facts
# and proxies to the backend on loopback. The certificate comes from
# Let's Encrypt by HTTP-01, so port 80 stays open for the challenge and
# redirects everything else to HTTPS.
{ config, ... }:
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
