#!/usr/bin/env python3
"""Hostile HTTP peers against a task's /metrics endpoint.

  metrics_hostile.py PORT MAX_CONNECTIONS

Each attack prints "ok ..." or "not ok ..."; the endpoint must answer only
GET /metrics with 200, close what is not HTTP, refuse oversized requests,
cap its connections (a flood of trickling peers never holds more than the
cap, and a good scraper is served once they run out of time), and serve
normally afterwards.
"""
import os
import socket
import sys
import time

PORT = int(sys.argv[1])
CAP = int(sys.argv[2])
failed = 0


def report(ok, what):
    global failed
    print(("ok " if ok else "not ok ") + what, flush=True)
    if not ok:
        failed += 1


def dial():
    return socket.create_connection(("127.0.0.1", PORT), timeout=20)


def exchange(data, wait=10.0):
    """Sends data, reads until the peer closes or wait s pass; returns
    (reply bytes, closed)."""
    s = dial()
    try:
        s.sendall(data)
    except OSError:
        pass  # the endpoint may close while we still send: that is an answer too
    s.settimeout(wait)
    out, closed = b"", False
    end = time.time() + wait
    try:
        while time.time() < end:
            b = s.recv(65536)
            if not b:
                closed = True
                break
            out += b
    except socket.timeout:
        pass
    except OSError:
        closed = True
    s.close()
    return out, closed


def status(reply):
    line = reply.split(b"\r\n", 1)[0]
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def good_scrape(wait=20.0):
    out, _ = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wait)
    return status(out) == 200 and b"\nprocess_open_fds " in out, out


# ---- requests that are not GET /metrics ------------------------------------------------
for method in [b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"TRACE"]:
    out, _ = exchange(method + b" /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    report(status(out) == 405 and b"\r\nAllow: GET\r\n" in out,
           "%s /metrics is 405 with Allow: GET" % method.decode())
for path in [b"/", b"/metrics/", b"/metricsz", b"/../metrics", b"/favicon.ico"]:
    out, _ = exchange(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    report(status(out) == 404, "GET %s is 404" % path.decode())

# ---- garbage ----------------------------------------------------------------------------
cases = {
    "64 KiB of random bytes": os.urandom(65536),
    "a TLS ClientHello": bytes.fromhex("160301020001000200") + os.urandom(500),
    "an unknown method": b"BREW /metrics HTTP/1.1\r\n\r\n",
    "HTTP/9.9": b"GET /metrics HTTP/9.9\r\n\r\n",
    "a request line without a version": b"GET /metrics\r\n\r\n",
    "a 1 MiB URI": b"GET /metrics?" + b"a" * (1 << 20) + b" HTTP/1.1\r\n\r\n",
    "a 100 KiB header": b"GET /metrics HTTP/1.1\r\nX-A: " + b"b" * 100000 + b"\r\n\r\n",
    "20000 small headers": b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 20000 + b"\r\n",
    "a body of 1 GB announced": b"POST /metrics HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n" + b"z" * 100000,
    "a negative Content-Length": b"GET /metrics HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    "a chunked body that never ends": b"POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n" + b"q" * 50000,
}
for what, data in cases.items():
    out, closed = exchange(data, wait=15)
    st = status(out)
    report(closed and st != 200, "%s: no 200, connection closed (status %s)" % (what, st))
    ok, _ = good_scrape()
    report(ok, "GET /metrics still answers after %s" % what)

# NUL bytes in header values: evhttp may take the request (its strings end at
# the NUL) or refuse it; either way one answer and the connection closes.
out, closed = exchange(b"GET /metrics HTTP/1.1\r\nHost: \x00\x00\r\nX: a\x00b\r\nConnection: close\r\n\r\n")
report(closed and status(out) in (200, 400), "NUL bytes in headers: one answer (%s), then closed" % status(out))
report(good_scrape()[0], "GET /metrics still answers after NUL bytes in headers")

# ---- pipelining and connections that go at once ------------------------------------------
out, closed = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50, wait=5)
report(out.count(b"HTTP/1.1 200 OK") == 50, "50 pipelined GETs get 50 answers (%d)" % out.count(b"HTTP/1.1 200 OK"))
for _ in range(300):
    s = dial()
    s.close()
report(good_scrape()[0], "300 connections closed at once leave it serving")

# ---- a flood of tricklers: more than the cap, each a byte now and then ---------------------
held = []
t0 = time.time()
for i in range(CAP * 4):
    try:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", PORT))
        held.append(s)
    except OSError:
        break
time.sleep(0.5)
for s in held:
    try:
        s.send(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
    except OSError:
        pass
report(len(held) == CAP * 4, "%d trickling peers connected (the cap is %d)" % (len(held), CAP))
ok, out = good_scrape(wait=40)
waited = time.time() - t0
report(ok and waited < 10, "a good scraper is served at once while they trickle (%.1f s)" % waited)


def open_fds(out):
    for line in out.split(b"\n"):
        if line.startswith(b"process_open_fds "):
            return float(line.split()[1])
    return None


during = open_fds(out)
for s in held:
    s.close()
ok, out = good_scrape()
after = open_fds(out)
report(during is not None and after is not None and during <= after + CAP + 1,
       "the endpoint held at most the cap: %s descriptors open during the flood, %s after" % (during, after))
report(ok and after < 40, "afterwards it serves with %s descriptors open" % after)

# ---- many good scrapes ----------------------------------------------------------------------
n = 0
t0 = time.time()
for _ in range(200):
    n += good_scrape()[0]
report(n == 200, "200 scrapes in a row all answered (%.2f s)" % (time.time() - t0))
print("metrics_hostile: %d failed" % failed)
sys.exit(1 if failed else 0)
