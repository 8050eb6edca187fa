#!/usr/bin/env python3
"""The test target's web server: answers every GET with the page the fake
activation wrote (DIR/health.txt), 200 while it exists and 503 while it does
not. Plain HTTP, or HTTPS with --cert/--key (a certificate for the site's
domain from the tests' own CA). Listens on one address, or on :: for both
families.

The origin certificate: when the target holds the deploy's secrets
cloudflareOriginCert and cloudflareOriginKey (/var/lib/blog-secrets/<name>
as the target sees it, i.e. through /proc/<its sshd>/root: this server runs in
the target's network namespace but not in its mount namespace), every new TLS
connection is served with that certificate and key instead of --cert/--key,
read afresh for that connection, so that a delivery (or a rollback) takes
effect without a restart. Both are read from the one set the
/var/lib/blog-secrets link points at when the connection starts. A pair that
does not load (no match, not PEM) fails that connection's handshake, and the
reason goes to the log. Without --cert the server speaks plain HTTP, and TLS
to a client that starts a TLS handshake while the origin pair exists.
--secrets DIR names the secrets directory directly (as this server sees it),
e.g. when it runs outside target.sh. When the activated system says which
certificate the site serves (DIR/tls, written by the fake activation as nginx's
configuration would decide it), the origin pair is served only for
"cloudflare-origin": with "acme" the site keeps --cert/--key, whatever secrets
the host holds."""
import argparse
import http.server
import os
import socket
import ssl
import threading
from typing import Optional

ORIGIN_CERT = "cloudflareOriginCert"
ORIGIN_KEY = "cloudflareOriginKey"
SECRETS_PATH = "var/lib/blog-secrets"
TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello


class OriginPair:
    """Where the origin certificate and key are, for the target in DIR/.. ."""

    def __init__(self, health_dir: str, secrets: Optional[str]) -> None:
        self.explicit = secrets
        self.tls_mode = os.path.join(health_dir, "tls")
        self.target_env = os.path.join(os.path.dirname(os.path.abspath(health_dir)), "target.env")
        self.root: Optional[str] = None

    def _target_root(self) -> Optional[str]:
        """/proc/<sshd>/root: the target's file system, its mounts included."""
        if self.root is None:
            try:
                with open(self.target_env, encoding="utf-8") as f:
                    for line in f:
                        if line.startswith("SSHD_PID="):
                            self.root = f"/proc/{line.strip().split('=', 1)[1]}/root"
            except FileNotFoundError:
                return None
        return self.root

    def files(self) -> Optional[tuple]:
        """(cert, key) of the set the secrets link points at now, when both exist
        and the activated system serves them."""
        try:
            with open(self.tls_mode, encoding="utf-8") as f:
                if f.read().strip() != "cloudflare-origin":
                    return None
        except FileNotFoundError:
            pass
        if self.explicit is not None:
            base = self.explicit
        else:
            root = self._target_root()
            if root is None:
                return None
            base = os.path.join(root, SECRETS_PATH)
            # deploy's target-shim makes /var/lib/blog-secrets a relative link to
            # the live set and swaps it with rename(2): follow it once, so that the
            # certificate and the key come from the same set. (os.path.realpath
            # would resolve /proc/<pid>/root itself, to this namespace's /.)
            try:
                link = os.readlink(base)
            except OSError:
                link = None
            if link is not None:
                base = os.path.join(root, link.lstrip("/")) if os.path.isabs(link) else os.path.join(os.path.dirname(base), link)
        cert, key = os.path.join(base, ORIGIN_CERT), os.path.join(base, ORIGIN_KEY)
        return (cert, key) if os.path.isfile(cert) and os.path.isfile(key) else None

    def context(self) -> Optional[ssl.SSLContext]:
        """A server context with the origin pair, read now; None when there is none.
        Raises when the pair exists but does not load."""
        for attempt in range(2):
            found = self.files()
            if found is None:
                return None
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(*found)
                return context
            except FileNotFoundError:
                if attempt == 1:  # the set went away twice while we read it
                    raise
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--secrets", help="the directory holding cloudflareOriginCert/Key (default: the target's /var/lib/blog-secrets)")
    args = parser.parse_args()
    page = os.path.join(args.dir, "health.txt")
    origin = OriginPair(args.dir, args.secrets)
    log_lock = threading.Lock()

    def log(message: str) -> None:
        with log_lock:
            print(message, flush=True)

    default_context: Optional[ssl.SSLContext] = None
    if args.cert:
        default_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        default_context.load_cert_chain(args.cert, args.key)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            try:
                with open(page, "rb") as f:
                    body, status = f.read(), 200
            except FileNotFoundError:
                body, status = b"no system is active\n", 503
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *fargs: object) -> None:
            log(f"{self.client_address[0]} {fmt % fargs}")

    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET

    class Server(http.server.ThreadingHTTPServer):
        address_family = family

        def server_bind(self) -> None:
            if family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

        def tls_context(self, request: socket.socket, client: str) -> Optional[ssl.SSLContext]:
            """The context this connection gets: the origin pair if there is one, else
            --cert/--key; None for plain HTTP."""
            try:
                context = origin.context()
            except (OSError, ssl.SSLError) as e:
                log(f"{client} origin certificate {ORIGIN_CERT}/{ORIGIN_KEY} does not load: {e}")
                raise
            if context is None:
                return default_context
            if default_context is None:
                # A plain-HTTP server: TLS only for a client that starts a handshake.
                try:
                    first = request.recv(1, socket.MSG_PEEK)
                except OSError:
                    return None
                if not first or first[0] != TLS_HANDSHAKE:
                    return None
            return context

        # Runs in the connection's own thread (ThreadingMixIn): the handshake too.
        def finish_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
            client = client_address[0]
            try:
                context = self.tls_context(request, client)
            except (OSError, ssl.SSLError):
                return
            if context is None:
                super().finish_request(request, client_address)
                return
            try:
                tls = context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                log(f"{client} TLS handshake failed: {e}")
                return
            try:
                super().finish_request(tls, client_address)
            finally:
                self.shutdown_request(tls)

    server = Server((args.bind, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
