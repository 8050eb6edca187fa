#!/usr/bin/env python3
"""The test target's web server: answers every GET with the page the fake
activation wrote (DIR/health.txt), 200 while it exists and 503 while it does
not. Plain HTTP, or HTTPS with --cert/--key (a certificate for the site's
domain from the tests' own CA). Listens on one address, or on :: for both
families."""
import argparse
import http.server
import os
import socket
import ssl


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    page = os.path.join(args.dir, "health.txt")

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
            print(f"{self.client_address[0]} {fmt % fargs}", flush=True)

    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET

    class Server(http.server.ThreadingHTTPServer):
        address_family = family

        def server_bind(self) -> None:
            if family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    server = Server((args.bind, args.port), Handler)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
