#!/usr/bin/env python3
"""Decodes dtf's TensorBoard event files without dtf's own code.

  tfevents_check.py PROTO FILE... [--want TAG[:EVERY]]...

Every file is read as TFRecords: the little-endian u64 length, the masked
CRC32C of those 8 bytes, the record, the masked CRC32C of the record; both
CRCs are computed here (CRC-32C, Castagnoli). The records' bytes are then
decoded by Debian's protoc --decode against PROTO (TensorBoard's field
numbers), all of a file in one run: each record becomes field 1 of a
wrapper message (tensorboard.Records).

Checks, printed as "ok ..." / "not ok ..." lines: the framing and CRCs of
every record, the first record's file_version "brain.Event:2", and for each
--want TAG: the tag has scalars at strictly increasing steps; with :EVERY,
exactly one per multiple of EVERY that the run passed (the step of each
falls in its own window [k*EVERY, (k+1)*EVERY)). Prints the scalars found
as "scalar TAG STEP VALUE" lines for the caller.
"""
import re
import subprocess
import sys

POLY = 0x82F63B78
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(c):
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


failed = 0


def report(ok, what):
    global failed
    print(("ok " if ok else "not ok ") + what)
    if not ok:
        failed += 1


def records(path):
    data = open(path, "rb").read()
    pos, out = 0, []
    while pos < len(data):
        if len(data) - pos < 12:
            report(False, "%s: %d stray bytes at the end" % (path, len(data) - pos))
            break
        head = data[pos:pos + 8]
        n = int.from_bytes(head, "little")
        if masked(crc32c(head)) != int.from_bytes(data[pos + 8:pos + 12], "little"):
            report(False, "%s: bad length CRC at byte %d" % (path, pos))
            break
        body = data[pos + 12:pos + 12 + n]
        tail = data[pos + 12 + n:pos + 16 + n]
        if len(body) < n or len(tail) < 4:
            report(False, "%s: record at byte %d cut short" % (path, pos))
            break
        if masked(crc32c(body)) != int.from_bytes(tail, "little"):
            report(False, "%s: bad data CRC at byte %d" % (path, pos))
            break
        out.append(body)
        pos += 16 + n
    return out


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode(proto, recs):
    """protoc's text for every record, one dict per event."""
    wrapper = b"".join(b"\x0a" + varint(len(r)) + r for r in recs)
    d = proto.rsplit("/", 1)
    inc, name = (d[0], d[1]) if len(d) == 2 else (".", d[0])
    p = subprocess.run(["protoc", "--proto_path=" + inc, "--decode=tensorboard.Records", name],
                       input=wrapper, capture_output=True, cwd=None)
    if p.returncode != 0:
        report(False, "protoc --decode failed: " + p.stderr.decode(errors="replace")[:300])
        return []
    events, cur, depth = [], None, 0
    for line in p.stdout.decode().splitlines():
        s = line.strip()
        if s == "event {":
            cur, depth = {"scalars": []}, 1
            continue
        if cur is None:
            continue
        if s.endswith("{"):
            depth += 1
            continue
        if s == "}":
            depth -= 1
            if depth == 0:
                events.append(cur)
                cur = None
            continue
        m = re.match(r'^(\w+): (.*)$', s)
        if not m:
            continue
        k, v = m.group(1), m.group(2)
        if k == "wall_time":
            cur["wall"] = float(v)
        elif k == "step":
            cur["step"] = int(v)
        elif k == "file_version":
            cur["version"] = v.strip('"')
        elif k == "tag":
            cur["scalars"].append([v.strip('"'), None])
        elif k == "simple_value":
            cur["scalars"][-1][1] = float(v)
    return events


def main():
    args = sys.argv[1:]
    proto, files, wants = args[0], [], []
    i = 1
    while i < len(args):
        if args[i] == "--want":
            wants.append(args[i + 1])
            i += 2
        else:
            files.append(args[i])
            i += 1
    scalars = {}
    for f in files:
        recs = records(f)
        report(len(recs) > 0, "%s: %d records, framing and both CRCs of each right" % (f, len(recs)))
        evs = decode(proto, recs)
        report(len(evs) == len(recs), "%s: protoc decoded all %d records" % (f, len(recs)))
        if evs:
            report(evs[0].get("version") == "brain.Event:2",
                   "%s: the first record is file_version brain.Event:2 (%s)" % (f, evs[0].get("version")))
        for e in evs:
            report_wall = e.get("wall", 0) > 1e9
            if not report_wall:
                report(False, "%s: an event without a wall_time" % f)
            for tag, v in e["scalars"]:
                scalars.setdefault(tag, []).append((e.get("step", 0), v))
    for tag, pts in sorted(scalars.items()):
        for s, v in pts:
            print("scalar %s %d %r" % (tag, s, v))
    for w in wants:
        tag, _, every = w.partition(":")
        pts = scalars.get(tag, [])
        steps = [s for s, _ in pts]
        report(len(steps) > 0 and all(a < b for a, b in zip(steps, steps[1:])),
               "%s at increasing steps (%d of them: %s)" % (tag, len(steps), steps[:12]))
        report(all(v is not None and v == v for _, v in pts), "%s: every value a number" % tag)
        if every:
            # One evaluation in each window [k*e, (k+1)*e) the run reached,
            # none before the first; the last window may hold a second, the
            # evaluation at the end of training.
            e = int(every)
            last = max(steps) if steps else 0
            counts = [sum(1 for s in steps if s // e == k) for k in range(last // e + 1)]
            ok = len(steps) > 0 and counts[0] == 0 and all(c == 1 for c in counts[1:-1]) and \
                counts[-1] in (1, 2) and (last // e > 0)
            report(ok, "%s: one at every %d global steps (steps %s)" % (tag, e, steps))
    print("tfevents_check: %d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
