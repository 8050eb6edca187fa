# VM test of the blog host: `nix flake check ./nix` runs it.
#
# Node `blog` is the production host (nix/hosts/blog.nix, domain example.com)
# with its cloud-only parts switched off from here: disko (the VM has its own
# disks) and cloud-init (there is no Hetzner metadata service).
#
# ACME: node `acme` runs nixpkgs' test ACME server (pebble, from
# nixos/tests/common/acme/server), so the real HTTP-01 flow runs end to end:
# pebble fetches the challenge from blog's port 80 and issues the
# certificate that nginx then serves. The client trusts pebble's root.
{ inputs }:
{ lib, ... }:
let
  acmeServer = "${inputs.nixpkgs}/nixos/tests/common/acme/server";
in
{
  name = "blog";

  # The shared modules take the flake inputs (disko, the backend) as an argument.
  node.specialArgs = { inherit inputs; };

  nodes = {
    acme =
      { pkgs, ... }:
      {
        imports = [ acmeServer ];
        # dig, to see the test resolver answer for the blog's domain.
        environment.systemPackages = [ pkgs.dnsutils ];
      };

    blog =
      {
        config,
        nodes,
        pkgs,
        ...
      }:
      {
        imports = [ ../hosts/blog.nix ];

        # Cloud-only parts, off in the VM: disko, cloud-init, and the uplink
        # with its IPv6 from Hetzner's metadata service (there is none here).
        disko.enableConfig = lib.mkForce false;
        services.cloud-init.enable = lib.mkForce false;
        systemd.services.hetzner-ipv6.enable = lib.mkForce false;
        systemd.network.networks."10-uplink".enable = lib.mkForce false;
        # The test network gives static addresses; no DHCP server exists.
        networking.useDHCP = lib.mkForce false;

        # ACME against the test server instead of Let's Encrypt.
        security.acme.defaults.server = "https://${nodes.acme.test-support.acme.caDomain}/dir";
        security.pki.certificateFiles = [ nodes.acme.test-support.acme.caCert ];
        # Names without DNS here; the test resolver on `acme` serves these
        # entries to pebble too, so it validates against this node.
        networking.extraHosts = ''
          ${nodes.acme.networking.primaryIPAddress} ${nodes.acme.test-support.acme.caDomain}
          ${config.networking.primaryIPAddress} ${config.blog.host.domain}
        '';

        # For the firewall probe: a listener on all addresses, on a port that is not open.
        environment.systemPackages = [ pkgs.python3 ];
      };

    client =
      { pkgs, ... }:
      {
        environment.systemPackages = [
          pkgs.curl
          pkgs.netcat
          pkgs.openssh
        ];
      };
  };

  testScript =
    { nodes, ... }:
    let
      domain = nodes.blog.blog.host.domain;
      vhost = nodes.blog.services.nginx.virtualHosts.${domain};
      acmeRoot = if vhost.acmeRoot != null then vhost.acmeRoot else "/var/lib/acme/acme-challenge";
    in
    ''
      import re

      domain = "${domain}"
      blog_ip = "${nodes.blog.networking.primaryIPAddress}"
      ca_domain = "${nodes.acme.test-support.acme.caDomain}"
      ca_ip = "${nodes.acme.networking.primaryIPAddress}"
      ca_cert = "${nodes.acme.test-support.acme.caCert}"
      acme_root = "${acmeRoot}"
      on_blog = f"--resolve {domain}:80:{blog_ip} --resolve {domain}:443:{blog_ip}"

      # The CA and the test network's DNS first: blog orders its certificate
      # once at boot, and pebble validates it by resolving the domain through
      # the acme node's resolver (BIND, nixos/tests/common/resolver.nix). An
      # order that meets no CA, or a resolver not yet answering, is retried
      # only 15 minutes later, after this test's timeout. Like nixpkgs' own
      # ACME tests (nixos/tests/acme/python-utils.py, wait_for_running), wait
      # for the whole node, then for the resolver to answer for the domain.
      acme.start()
      acme.succeed("systemctl is-system-running --wait")
      acme.wait_for_unit("pebble.service")
      acme.wait_for_unit("bind.service")
      acme.wait_for_open_port(53)
      acme.wait_for_open_port(443)
      acme.wait_for_open_port(15000)
      acme.wait_until_succeeds(f"dig +short @127.0.0.1 {domain} A | grep -Fx {blog_ip}", timeout=60)
      blog.start()
      client.start()
      blog.wait_for_unit("multi-user.target")
      blog.wait_for_unit("blog-backend.service")
      blog.wait_for_unit("nginx.service")
      client.wait_for_unit("multi-user.target")

      with subtest("the backend listens on loopback only"):
          blog.wait_for_open_port(3000)
          listeners = blog.succeed("ss -Htln 'sport = :3000'").strip().splitlines()
          assert listeners, "expected a listener on port 3000"
          for line in listeners:
              local = line.split()[3]
              assert local == "127.0.0.1:3000", f"expected 127.0.0.1:3000 only, got {local}"
          blog.succeed("curl --fail --silent http://127.0.0.1:3000/ | grep -F 'Hello, World'")

      with subtest("the backend answers through nginx over HTTPS with an ACME certificate"):
          # Pebble makes a new root at every start; its management API hands it out.
          client.wait_until_succeeds(
              f"curl --fail --silent --show-error --cacert {ca_cert}"
              f" --resolve {ca_domain}:15000:{ca_ip}"
              f" https://{ca_domain}:15000/roots/0 -o /tmp/acme-root.pem",
              timeout=60,
          )
          # Until pebble has issued the certificate nginx serves a self-signed one.
          client.wait_until_succeeds(
              f"curl --fail --silent --show-error --cacert /tmp/acme-root.pem {on_blog}"
              f" https://{domain}/ | grep -F 'Hello, World'",
              timeout=300,
          )

      with subtest("HTTP redirects to HTTPS, except ACME challenges"):
          answer = client.succeed(
              "curl --silent --output /dev/null --write-out '%{http_code} %{redirect_url}'"
              f" {on_blog} http://{domain}/some/page"
          )
          expected = f"301 https://{domain}/some/page"
          assert answer == expected, f"expected '{expected}', got '{answer}'"
          blog.succeed(
              f"mkdir -p {acme_root}/.well-known/acme-challenge"
              f" && echo vm-test-token > {acme_root}/.well-known/acme-challenge/vm-test-probe"
          )
          client.succeed(
              f"curl --fail --silent {on_blog}"
              f" http://{domain}/.well-known/acme-challenge/vm-test-probe | grep -Fx vm-test-token"
          )

      with subtest("sshd refuses password and keyboard-interactive logins"):
          blog.wait_for_unit("sshd.service")
          status, output = client.execute(
              "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
              " -o ConnectTimeout=10 -o PreferredAuthentications=password,keyboard-interactive"
              f" root@{blog_ip} true 2>&1"
          )
          assert status != 0, "expected the password login to fail"
          assert "Permission denied (publickey)" in output, (
              f"expected sshd to offer publickey only, got: {output}"
          )
          settings = blog.succeed("${nodes.blog.programs.ssh.package}/bin/sshd -T").splitlines()
          for line in ["passwordauthentication no", "kbdinteractiveauthentication no"]:
              assert line in settings, f"expected '{line}' in sshd -T"

      with subtest("the firewall drops every port but 22, 80 and 443"):
          blog.succeed("systemd-run --unit=firewall-probe python3 -m http.server --bind 0.0.0.0 8080")
          blog.wait_for_open_port(8080)
          blog.succeed("curl --fail --silent --output /dev/null http://127.0.0.1:8080/")
          for port in [3000, 8080]:
              client.fail(f"nc -z -w 5 {blog_ip} {port}")
          for port in [22, 80, 443]:
              client.succeed(f"nc -z -w 5 {blog_ip} {port}")
          blog.succeed("systemctl stop firewall-probe")

      with subtest("blog-backend.service is sandboxed (exposure <= 2.0)"):
          report = blog.succeed("systemd-analyze security --no-pager blog-backend.service")
          match = re.search(r"Overall exposure level for blog-backend\.service: ([0-9.]+)", report)
          assert match, f"no exposure level in: {report}"
          exposure = float(match.group(1))
          assert exposure <= 2.0, f"expected exposure <= 2.0, got {exposure}:\n{report}"
    '';
}
