#!/usr/bin/env python3
"""One async PUSH with a chosen request id and step tag, as a worker's client
re-sends what was in flight after reconnecting (ps_faults.sh):
    resend_push.py PORT P CHECKSUM ID TAG
Says HELLO as worker 0 (no token), pushes a gradient of ones over the
shard's whole range and prints the reply: "reply aux=A step=S" (aux is the
ps's dtf_push_result: 0 applied, 3 duplicate)."""
import struct
import sys

from hostile_peer import HELLO_REPLY, PUSH, conn, frames, hdr, hello

PUSH_REPLY = 6


def recv_frame(s):
    data = b''
    while True:
        fs = frames(data)
        if fs and len(data) >= 40 + len(fs[0][6]):
            return fs[0], data
        b = s.recv(65536)
        if not b:
            sys.exit('resend_push: the ps closed the connection (%d bytes read)' % len(data))
        data += b


def main():
    port, P, checksum, id_, tag = sys.argv[1:6]
    s = conn(int(port))
    s.sendall(hello(b'', int(P), int(checksum, 16)))
    (t, _aux, _id, off, cnt, _step, _body), _ = recv_frame(s)
    if t != HELLO_REPLY:
        sys.exit('resend_push: expected HELLO_REPLY, got type %d' % t)
    body = struct.pack('<%df' % cnt, *([1.0] * cnt))
    s.sendall(hdr(PUSH, int(id_), len(body), off, cnt, int(tag)) + body)
    (t, aux, rid, _off, _cnt, step, _body), _ = recv_frame(s)
    if t != PUSH_REPLY or rid != int(id_):
        sys.exit('resend_push: expected PUSH_REPLY to %s, got type %d id %d' % (id_, t, rid))
    print('reply aux=%d step=%d' % (aux, step))
    s.close()


if __name__ == '__main__':
    main()
