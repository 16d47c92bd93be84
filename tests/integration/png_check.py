#!/usr/bin/env python3
"""Reads a PNG (8-bit RGB or RGBA, as Chromium's screenshots are) with zlib
alone and reports what a picture of a plot must have.

  png_check.py FILE.png RRGGBB...

Prints "size W H", "colors N" (distinct colors), "dark N" (near-black
pixels: text, axes) and "color RRGGBB N" for each color asked (pixels within
a small distance of it: the lines of the plot).
"""
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit("not a PNG")
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            if depth != 8 or ctype not in (2, 6):
                raise SystemExit("unsupported PNG: depth %d type %d" % (depth, ctype))
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, bpp, rows


def main():
    w, h, bpp, rows = read_png(sys.argv[1])
    want = [tuple(int(c[k:k + 2], 16) for k in (0, 2, 4)) for c in sys.argv[2:]]
    colors, dark, near = set(), 0, [0] * len(want)
    for line in rows:
        for x in range(0, w * bpp, bpp):
            px = (line[x], line[x + 1], line[x + 2])
            colors.add(px)
            if sum(px) < 150:
                dark += 1
            for k, c in enumerate(want):
                if sum(abs(px[j] - c[j]) for j in range(3)) < 60:
                    near[k] += 1
    print("size %d %d" % (w, h))
    print("colors %d" % len(colors))
    print("dark %d" % dark)
    for k, c in enumerate(sys.argv[2:]):
        print("color %s %d" % (c, near[k]))


main()
