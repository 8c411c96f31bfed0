"""A TLS client on Python's own `ssl` module (OpenSSL underneath), for tests/tls/clients.rs.

Always connects to 127.0.0.1; the name given is sent as SNI (and as Host) and the
certificate is verified against the CA file for that name, as any Python program does.

    python_client.py https PORT NAME CAFILE REQUEST...
        REQUEST is METHOD:PATH or METHOD:PATH:BODY_LENGTH (a pattern body); all go on one
        connection with http.client. Prints `version V`, `cert HEX` (the server's
        certificate, DER), then per response `response STATUS LOCAL_PORT HEX_BODY`.
    python_client.py echo PORT NAME CAFILE < PAYLOAD
        Sends the payload, reads as many bytes back, then unwraps the session (sends
        close_notify and waits for the server's). Prints `echo HEX` and `unwrapped`.

Exits non-zero with Python's own error on any failure (a refused certificate included).
"""

import http.client
import socket
import ssl
import sys

TIMEOUT = 10


def tls_socket(port, name, cafile):
    context = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return context.wrap_socket(raw, server_hostname=name)


class Connection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 whatever the host name, which is sent as SNI and Host."""

    def __init__(self, name, port, cafile):
        super().__init__(name, port, timeout=TIMEOUT)
        self.cafile = cafile

    def connect(self):
        self.sock = tls_socket(self.port, self.host, self.cafile)


def pattern(length):
    """The tests' body bytes (common::pattern): byte i is i % 251."""
    return bytes(i % 251 for i in range(length))


def https(port, name, cafile, requests):
    conn = Connection(name, port, cafile)
    for request in requests:
        method, path, *length = request.split(":")
        body = pattern(int(length[0])) if length else None
        headers = {"Content-Type": "application/octet-stream"} if body else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if request is requests[0]:
            print("version", conn.sock.version())
            print("cert", conn.sock.getpeercert(binary_form=True).hex())
        local_port = conn.sock.getsockname()[1]
        print("response", response.status, local_port, data.hex() or "-")
    conn.close()


def echo(port, name, cafile):
    payload = sys.stdin.buffer.read()
    tls = tls_socket(port, name, cafile)
    tls.sendall(payload)
    got = bytearray()
    while len(got) < len(payload):
        chunk = tls.recv(65536)
        if not chunk:
            break
        got += chunk
    print("echo", bytes(got).hex() or "-", flush=True)
    tls.unwrap().close()
    print("unwrapped")


def main(args):
    mode, port, name, cafile, *rest = args
    if mode == "https":
        https(int(port), name, cafile, rest)
    elif mode == "echo":
        echo(int(port), name, cafile)
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
