#!/usr/bin/env python3
"""Misbehaving peers against a ps (hostile_peer.sh starts it):
    hostile_peer.py PORT TOKEN P CHECKSUM      the hostile cases, one "ok"/"not ok" line each
    hostile_peer.py hold PORT SECONDS          a half frame held open (runs beside a good client)
    hostile_peer.py flood PORT TOKEN P CHECKSUM NCONN NPULL EXTRA SECONDS
        NCONN peers that pipeline NPULL whole-shard PULLs each and never read
        the replies; 4 peers that park PULLs for a step that never comes;
        EXTRA bare connections on top (those past max_connections are
        refused); holds them all SECONDS (or until the ps closes them)
Frame layout: see src/wire.h."""
import socket
import struct
import sys
import time

MAGIC = 0x57465444
HELLO, HELLO_REPLY, PULL, PUSH, ERROR = 1, 2, 3, 5, 13


def hdr(t, id_=1, ln=0, off=0, cnt=0, step=0, aux=0, ver=1, magic=MAGIC):
    return struct.pack('<IHBBIIQQq', magic, ver, t, aux, id_, ln, off, cnt, step)


def hello(token, P, checksum, index=0, role=1):
    body = struct.pack('<BBHIQQ', role, 0, len(token), index, P, checksum) + token
    return hdr(HELLO, 1, len(body)) + body


def conn(port):
    s = socket.create_connection(('127.0.0.1', port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(s, limit=1 << 20):
    """Reads until the ps closes; None if it does not within the timeout."""
    out = b''
    try:
        while len(out) < limit:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    except (socket.timeout, TimeoutError):
        return None
    except ConnectionResetError:
        return out
    return out


def frames(data):
    """Splits bytes into (type, aux, id, offset, count, step, payload)."""
    res = []
    while len(data) >= 40:
        magic, ver, t, aux, id_, ln, off, cnt, step = struct.unpack('<IHBBIIQQq', data[:40])
        res.append((t, aux, id_, off, cnt, step, data[40:40 + ln]))
        data = data[40 + ln:]
    return res


results = []


def report(ok, what):
    results.append(ok)
    print(('ok ' if ok else 'not ok ') + what, flush=True)


def expect_error(port, data, want, what):
    s = conn(port)
    s.sendall(data)
    got = read_all(s)
    s.close()
    if got is None:
        return report(False, what + ': the ps did not close the connection')
    fs = frames(got)
    errs = [f[6].decode(errors='replace') for f in fs if f[0] == ERROR]
    ok = bool(errs) and want in errs[-1]
    report(ok, what + (': "%s"' % errs[-1] if errs else ': no ERROR frame (%d bytes)' % len(got)))


def send_some(s, data):
    """Sends what the socket takes without blocking; returns the bytes sent."""
    s.setblocking(False)
    sent = 0
    try:
        while sent < len(data):
            k = s.send(data[sent:sent + 65536])
            if k <= 0:
                break
            sent += k
    except (BlockingIOError, ConnectionError):
        pass
    return sent


def flood(port, token, P, checksum, nconn, npull, extra, secs):
    held = []
    pulls = b''.join(hdr(PULL, 2 + i, off=0, cnt=P) for i in range(npull))
    sent = 0
    for _ in range(nconn):
        s = conn(port)
        sent += send_some(s, hello(token, P, checksum, role=2) + pulls)
        held.append(s)
    print('flood: %d peers sent %.1f MB of PULLs asking for %.0f MB of replies, reading none' %
          (nconn, sent / 1e6, nconn * npull * 4.0 * P / 1e6), flush=True)
    # Parked pulls: a step that never comes, more than the ps lets wait.
    parked_closed = 0
    for _ in range(4):
        s = conn(port)
        s.sendall(hello(token, P, checksum, role=2) +
                  b''.join(hdr(PULL, 2 + i, off=0, cnt=P, step=1 << 40) for i in range(20)))
        got = read_all(s)
        s.close()
        errs = [f[6].decode(errors='replace') for f in frames(got or b'') if f[0] == ERROR]
        parked_closed += bool(errs) and 'PULLs waiting for a step' in errs[-1]
    report(parked_closed == 4, 'peers parking 20 PULLs each are closed past the cap (%d of 4)' % parked_closed)
    # Bare connections on top: the ps refuses those past max_connections.
    bare, refused = [], 0
    for _ in range(extra):
        try:
            bare.append(conn(port))
        except OSError:
            refused += 1
    time.sleep(0.5)
    for s in bare:
        s.settimeout(0.01)
        try:
            if s.recv(1) == b'':
                refused += 1
        except (socket.timeout, TimeoutError, BlockingIOError):
            pass
        except ConnectionError:
            refused += 1
        s.close()
    print('flood: %d of %d more connections refused' % (refused, extra), flush=True)
    print('flooding', flush=True)
    time.sleep(secs)
    for s in held:
        s.close()
    print('flood: done', flush=True)
    return 0 if all(results) else 1


def main():
    if sys.argv[1] == 'hold':
        port, secs = int(sys.argv[2]), float(sys.argv[3])
        s = conn(port)
        s.sendall(hdr(PULL)[:17])   # half a header, then silence
        print('held', flush=True)
        time.sleep(secs)
        s.close()
        return 0
    if sys.argv[1] == 'flood':
        return flood(int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4]), int(sys.argv[5], 16),
                     int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]), float(sys.argv[9]))
    port, token, P, checksum = int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4], 16)

    expect_error(port, b'GET / HTTP/1.1\r\nHost: ps\r\n\r\n', 'bad magic', 'garbage bytes')
    expect_error(port, bytes(range(256)) * 64, 'bad magic', '16 KiB of noise')
    expect_error(port, hdr(PUSH, ln=1 << 30, cnt=1 << 28), 'over the cap', 'a 1 GiB frame')
    expect_error(port, hdr(PULL, ver=7), 'protocol version 7', 'another protocol version')
    expect_error(port, hdr(42), 'unknown message type 42', 'an unknown message type')
    expect_error(port, hdr(PULL, cnt=4), 'PULL before HELLO', 'a request before HELLO')
    expect_error(port, hello(b'not-the-token', P, checksum), 'wrong token', 'a wrong token')
    expect_error(port, hello(b'', P, checksum), 'needs a token', 'no token')
    expect_error(port, hello(token, P, checksum ^ 0xff), 'worker runs a different model: layout checksum',
                 'a HELLO from another model')
    expect_error(port, hello(token, P + 1, checksum), 'different model', 'a HELLO with another P')
    expect_error(port, hello(token, P, checksum, index=99), 'worker index 99 out of range',
                 'a worker index out of range')
    expect_error(port, hello(token, P, checksum) + hdr(PULL, 2, off=P - 2, cnt=10),
                 'outside this shard', 'a PULL outside the shard')
    expect_error(port, hello(token, P, checksum) + hdr(PUSH, 2, ln=8, off=0, cnt=2) + b'\0' * 8,
                 'is not this shard', 'a PUSH of part of the shard')
    expect_error(port, hello(token, P, checksum) + hello(token, P, checksum), 'second HELLO',
                 'two HELLOs')
    expect_error(port, hello(token, P, checksum, role=2) + hdr(PUSH, 2, ln=4 * P, cnt=P) + b'\0' * 4 * P,
                 'PUSH from an observer', 'a PUSH from an observer')

    # Disconnects mid-frame: in the header, and in a PUSH body.
    s = conn(port); s.sendall(hello(token, P, checksum)[:23]); s.close()
    s = conn(port); s.sendall(hello(token, P, checksum) + hdr(PUSH, 2, ln=4 * P, cnt=P) + b'\0' * 100)
    time.sleep(0.2); s.close()
    report(True, 'two peers hung up mid-frame (the ps log is checked later)')

    # A slow peer: a HELLO and a PULL dripped a few bytes at a time still work.
    s = conn(port)
    data = hello(token, P, checksum, role=2) + hdr(PULL, 2, off=0, cnt=P)
    for i in range(0, len(data), 7):
        s.sendall(data[i:i + 7])
        time.sleep(0.01)
    got = b''
    s.settimeout(5)
    try:
        while len(got) < 40 + 24 + 40 + 4 * P:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except socket.timeout:
        pass
    s.close()
    fs = frames(got)
    ok = len(fs) == 2 and fs[0][0] == HELLO_REPLY and fs[1][0] == PULL + 1 and \
        struct.unpack('<f', fs[1][6][4 * 5:4 * 6])[0] == 5.0
    report(ok, 'a slow peer dripping 7 bytes at a time is served (%d frames)' % len(fs))

    # A peer that connects and says nothing is dropped after hello_timeout.
    s = conn(port)
    t0 = time.time()
    got = read_all(s)
    s.close()
    report(got is not None and time.time() - t0 < 4.5,
           'a silent peer is closed after hello_timeout (%.1f s)' % (time.time() - t0))
    return 0 if all(results) else 1


if __name__ == '__main__':
    sys.exit(main())
