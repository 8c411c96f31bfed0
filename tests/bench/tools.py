#!/usr/bin/env python3
"""Helpers for tests/bench/run.sh (issue 5). Standard library only.

  tools.py tree PID                 PID and every descendant, one a line
  tools.py cpu PID                  user+sys clock ticks of PID's process tree (reaped
                                    children included through cutime/cstime)
  tools.py cpusplit PID             the same, split: "user sys" (utime+cutime, stime+cstime)
  tools.py perfsplit FILE...        "FILE<TAB>user<TAB>kernel" per perf record file
                                    (task-clock samples in user space and in the kernel;
                                    a missing or unreadable file is left out)
  tools.py rss PID                  VmRSS of PID's process tree, in KiB
  tools.py ready HOST PORT PATH S [tls]
                                    wait up to S seconds for a 200 on GET PATH (over TLS,
                                    certificate not checked, with "tls"); exit 1 if none
  tools.py idle HOST PORT PATH N PID [HOLD [MODE]]
                                    open N keep-alive connections, one GET each, keep them
                                    idle; print "conns rss_before_kib rss_after_kib" for
                                    PID's tree (measured after HOLD seconds, default 2).
                                    MODE: one (default), silent (no request: connections
                                    that never sent a byte), burst (first N connections
                                    with a GET each come and go, then as "one")
  tools.py load HOST PORT PATH N C  N requests over C keep-alive connections (one request
                                    in flight per connection); print "ok failed"
"""
import contextlib
import os
import subprocess
import selectors
import socket
import ssl
import sys
import time


def children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces
        fields = stat[stat.rindex(")") + 2:].split()
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def tree(pid):
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_split(pid):
    """(user, sys) clock ticks of PID's process tree, reaped children included."""
    user = system = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is stat field 3 (state): utime=14, stime=15, cutime=16, cstime=17
        user += int(fields[11]) + int(fields[13])
        system += int(fields[12]) + int(fields[14])
    return user, system


def cpu_ticks(pid):
    return sum(cpu_split(pid))


def perf_split(path):
    """(user, kernel) sample counts of a `perf record -e task-clock` file: a sample whose
    instruction pointer is in the kernel's half of the address space is kernel time."""
    out = subprocess.run(["perf", "script", "-i", path, "-F", "ip"], capture_output=True,
                         text=True, check=True).stdout
    user = kernel = 0
    for line in out.split():
        if int(line, 16) >= 0xFFFF800000000000:
            kernel += 1
        else:
            user += 1
    return user, kernel


def rss_kib(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def request(host, port, path):
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: clb-bench\r\n\r\n".encode()


class Reader:
    """Reads one Content-Length (or chunked-free) response at a time from a socket."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data

    def take(self):
        """Returns the status code of one complete response and drops it, or None."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buf[:end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(self.buf) < end + 4 + length:
            return None
        self.buf = self.buf[end + 4 + length:]
        return int(head.split(" ", 2)[1])


def ready(host, port, path, seconds, tls=False):
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1) as raw, \
                    (ctx.wrap_socket(raw) if ctx else contextlib.nullcontext(raw)) as s:
                s.sendall(request(host, port, path))
                r = Reader()
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    r.feed(data)
                    status = r.take()
                    if status is not None:
                        if status == 200:
                            return 0
                        break
        except OSError:
            pass
        time.sleep(0.05)
    return 1


def open_conns(host, port, req, n):
    """N connections; with `req`, one request answered on each (in batches)."""
    conns = []
    batch = 200  # below every accept backlog, so no SYN is dropped and retried
    sel = selectors.DefaultSelector()
    for start in range(0, n, batch):
        pending = {}
        for _ in range(min(batch, n - start)):
            s = socket.socket()
            s.connect((host, port))
            if req is None:
                conns.append(s)
                continue
            s.sendall(req)
            s.setblocking(False)
            pending[s] = Reader()
            sel.register(s, selectors.EVENT_READ)
        deadline = time.time() + 10
        while pending and time.time() < deadline:
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(s)
                    s.close()
                    del pending[s]
                    continue
                r = pending[s]
                r.feed(data)
                if r.take() is not None:
                    sel.unregister(s)
                    del pending[s]
                    conns.append(s)
        for s in pending:
            sel.unregister(s)
            s.close()
    return conns


def idle(host, port, path, n, pid, hold, mode):
    """mode: one (a GET each, then idle), silent (never a byte), burst (N connections
    with a GET each come and go first, then as "one")."""
    before = rss_kib(pid)
    req = request(host, port, path)
    if mode == "burst":
        for s in open_conns(host, port, req, n):
            s.close()
        time.sleep(1)  # the proxy sees the closes
    conns = open_conns(host, port, None if mode == "silent" else req, n)
    time.sleep(hold)
    # count only connections the proxy has not closed meanwhile
    alive = 0
    for s in conns:
        s.setblocking(False)
        try:
            alive += s.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    after = rss_kib(pid)
    print(alive, before, after)
    for s in conns:
        s.close()
    return 0


def load(host, port, path, n, c):
    req = request(host, port, path)
    sel = selectors.DefaultSelector()
    readers = {}
    sent = ok = failed = 0
    for _ in range(min(c, n)):
        s = socket.create_connection((host, port))
        s.setblocking(False)
        readers[s] = Reader()
        sel.register(s, selectors.EVENT_READ)
        s.sendall(req)
        sent += 1
    while readers:
        for key, _ in sel.select(timeout=5):
            s = key.fileobj
            try:
                data = s.recv(262144)
            except BlockingIOError:
                continue
            r = readers[s]
            if not data:
                failed += 1
                sel.unregister(s)
                s.close()
                del readers[s]
                continue
            r.feed(data)
            while True:
                status = r.take()
                if status is None:
                    break
                if status == 200:
                    ok += 1
                else:
                    failed += 1
                if sent < n:
                    s.sendall(req)
                    sent += 1
                else:
                    sel.unregister(s)
                    s.close()
                    del readers[s]
                    break
        if not sel.get_map() and readers:
            break
    print(ok, failed + (n - ok - failed if ok + failed < n else 0))
    return 0


def main(argv):
    cmd = argv[1]
    if cmd == "tree":
        print("\n".join(map(str, tree(int(argv[2])))))
    elif cmd == "cpu":
        print(cpu_ticks(int(argv[2])))
    elif cmd == "cpusplit":
        print(*cpu_split(int(argv[2])))
    elif cmd == "perfsplit":
        for path in argv[2:]:
            try:
                print(path, *perf_split(path), sep="\t")
            except (OSError, ValueError, subprocess.CalledProcessError):
                continue
    elif cmd == "rss":
        print(rss_kib(int(argv[2])))
    elif cmd == "ready":
        return ready(argv[2], int(argv[3]), argv[4], float(argv[5]),
                     len(argv) > 6 and argv[6] == "tls")
    elif cmd == "idle":
        hold = float(argv[7]) if len(argv) > 7 else 2.0
        mode = argv[8] if len(argv) > 8 else "one"
        return idle(argv[2], int(argv[3]), argv[4], int(argv[5]), int(argv[6]), hold, mode)
    elif cmd == "load":
        return load(argv[2], int(argv[3]), argv[4], int(argv[5]), int(argv[6]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
