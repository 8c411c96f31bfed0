"""A minimal WebSocket echo server (RFC 6455, standard library only) for tests/websocket.rs.

Prints its port, then serves each connection in a thread: the opening handshake, then
every text or binary message echoed back; a close frame is answered and ends it. Plain
HTTP requests (clb's health checks) get a 200.
"""
import base64
import hashlib
import socket
import struct
import sys
import threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None, b""
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def recv_exact(conn, n, buf):
    while len(buf) < n:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk
    return buf[:n], buf[n:]


def serve(conn):
    try:
        head, buf = read_head(conn)
        if head is None:
            return
        headers = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key")
        if key is None or headers.get("upgrade", "").lower() != "websocket":
            body = b"ok"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + body)
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        seen = headers.get("x-forwarded-for", "-")
        conn.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
                f"X-Seen-Forwarded-For: {seen}\r\n\r\n"
            ).encode()
        )
        while True:
            hdr, buf = recv_exact(conn, 2, buf)
            opcode = hdr[0] & 0x0F
            masked = hdr[1] & 0x80
            length = hdr[1] & 0x7F
            if length == 126:
                ext, buf = recv_exact(conn, 2, buf)
                length = struct.unpack("!H", ext)[0]
            elif length == 127:
                ext, buf = recv_exact(conn, 8, buf)
                length = struct.unpack("!Q", ext)[0]
            mask = b"\0\0\0\0"
            if masked:
                mask, buf = recv_exact(conn, 4, buf)
            payload, buf = recv_exact(conn, length, buf)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 8:
                conn.sendall(b"\x88\x00")
                return
            if length < 126:
                out = bytes([0x80 | opcode, length])
            elif length < 65536:
                out = bytes([0x80 | opcode, 126]) + struct.pack("!H", length)
            else:
                out = bytes([0x80 | opcode, 127]) + struct.pack("!Q", length)
            conn.sendall(out + payload)
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.2"
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, 0))
    server.listen(64)
    print(server.getsockname()[1], flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
