# Data, not a module: the host secrets' side of the contract with the deploy
# (scripts/) and the stack. secrets.nix, web.nix and tests/offline.nix read it,
# so the names and the pattern are written down once.
{
  # Where the deploy delivers each secret, as <directory>/<name>
  # (root:root 0400, the directory 0700), before it activates a system.
  # The deploy makes <directory> a relative symlink to the live set,
  # <store>/set-<id> (scripts/target-shim.sh), swapped atomically.
  directory = "/var/lib/blog-secrets";
  store = "/var/lib/blog-secrets.d";

  # A secret's name, whole (builtins.match matches the entire string):
  # the deploy checks ^[A-Za-z][A-Za-z0-9_]{0,63}$. It is also the systemd
  # credential's ID, so it must be a plain file name.
  namePattern = "[A-Za-z][A-Za-z0-9_]{0,63}";

  # The secrets of blog.host.tls = "cloudflare-origin" (nix/modules/web.nix).
  cloudflareOrigin = {
    cert = "cloudflareOriginCert";
    key = "cloudflareOriginKey";
    realIp = "cloudflareRealIp";
  };
}
