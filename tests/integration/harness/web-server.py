#!/usr/bin/python3
"""The web unit of the test systems (blog-web.service, closures.nix), which
runs inside a test target as nginx runs on a host: HTTP on port 80 and, when
it has a certificate, HTTPS on 443, on every address. Every GET answers the
system's page: 200 "blog ok <name>" for a healthy system, 503 for one built
unhealthy (the health check must fail on it).

The certificate, as the system's blog.host.tls has it (nix/modules/web.nix):
  acme               the certificate of the site the target was given
                     (/etc/blog-test/tls/{cert,key}.pem, from TARGET_TLS_CERT
                     and TARGET_TLS_KEY: a stand-in for the one Let's Encrypt
                     would issue); plain HTTP only without one;
  cloudflare-origin  the Origin CA certificate and key the deploy delivered as
                     host secrets, which the unit takes as credentials
                     (LoadCredential=, read from $CREDENTIALS_DIRECTORY, as
                     nginx reads /run/credentials/nginx.service/<name>): a new
                     pair needs a restart, as nginx does.
A certificate that does not load fails the start: the unit fails."""
import argparse
import http.server
import os
import socket
import ssl
import sys
import threading

ACME_CERT = "/etc/blog-test/tls/cert.pem"
ACME_KEY = "/etc/blog-test/tls/key.pem"
ORIGIN_CERT = "cloudflareOriginCert"
ORIGIN_KEY = "cloudflareOriginKey"


def tls_context(mode: str):
    if mode == "cloudflare-origin":
        directory = os.environ.get("CREDENTIALS_DIRECTORY", "")
        cert, key = os.path.join(directory, ORIGIN_CERT), os.path.join(directory, ORIGIN_KEY)
    else:
        cert, key = ACME_CERT, ACME_KEY
        if not os.path.exists(cert):
            return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--unhealthy", action="store_true")
    parser.add_argument("--tls", choices=["acme", "cloudflare-origin"], default="acme")
    args = parser.parse_args()
    body = (f"unhealthy: {args.name}\n" if args.unhealthy else f"blog ok {args.name}\n").encode()
    status = 503 if args.unhealthy else 200

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *fargs: object) -> None:
            print(f"{self.client_address[0]} {fmt % fargs}", flush=True)

    class Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6
        daemon_threads = True
        tls = None

        def server_bind(self) -> None:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

        # In the connection's own thread (ThreadingMixIn), the TLS handshake too.
        def finish_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
            if self.tls is None:
                super().finish_request(request, client_address)
                return
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                print(f"{client_address[0]} TLS handshake failed: {e}", flush=True)
                return
            try:
                super().finish_request(request, client_address)
            finally:
                self.shutdown_request(request)

    servers = [Server(("::", 80), Handler)]
    try:
        context = tls_context(args.tls)
    except (OSError, ssl.SSLError) as e:
        print(f"the {args.tls} certificate does not load: {e}", file=sys.stderr)
        sys.exit(1)
    if context is not None:
        https = Server(("::", 443), Handler)
        https.tls = context
        servers.append(https)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
