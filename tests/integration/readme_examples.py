#!/usr/bin/env python3
"""readme_examples.py README OUTDIR: writes README.md's marked examples into
OUTDIR for readme.sh to run, and the names README.md documents.

An example is a fenced block right after a `<!-- example: KIND -->` line
(KIND: lua, a script for `dtf run`; model, a model file for train.lua; sh,
shell lines run from the repository root). A fenced block right after a
`<!-- output -->` line that follows it is what the example prints: readme.sh
finds its lines in order in the real output, each number standing for any
number (accuracies differ a little by CPU) and `...` for any lines.

Writes OUTDIR/N.KIND (the example), OUTDIR/N.out (its output, when shown),
OUTDIR/N.line (its line in README.md), and OUTDIR/documented (every
backquoted word of README.md, one a line), OUTDIR/targets (every `make X`).

readme_examples.py --match SHOWN ACTUAL: exit 0 when ACTUAL (a file) holds
SHOWN's lines in that order, else 1 naming the first line not found."""
import re
import sys


def line_pattern(shown):
    """A shown line as a regular expression: each number any number."""
    parts = re.split(r"\d+(?:\.\d+)?", shown.strip())
    return re.compile(r"\s*" + r"\d+(?:\.\d+)?".join(re.escape(p) for p in parts) + r"\s*$")


def match(shown_path, actual_path):
    actual = open(actual_path, encoding="utf-8", errors="replace").read().split("\n")
    at = 0
    for shown in open(shown_path, encoding="utf-8").read().split("\n"):
        if shown.strip() in ("", "..."):
            continue
        pat = line_pattern(shown)
        while at < len(actual) and not pat.match(actual[at]):
            at += 1
        if at == len(actual):
            print(f"the output has no line like '{shown}' (after the lines matched before it)")
            return 1
        at += 1
    return 0


if sys.argv[1] == "--match":
    sys.exit(match(sys.argv[2], sys.argv[3]))

readme, outdir = sys.argv[1], sys.argv[2]
lines = open(readme, encoding="utf-8").read().split("\n")


def fenced(i):
    """The block starting at line i (a ``` line): its text, the line after it."""
    if i >= len(lines) or not lines[i].startswith("```"):
        return None, i
    j = i + 1
    while j < len(lines) and not lines[j].startswith("```"):
        j += 1
    if j >= len(lines):
        sys.exit(f"{readme}:{i + 1}: a fenced block that never closes")
    return "\n".join(lines[i + 1:j]) + "\n", j + 1


n, i = 0, 0
while i < len(lines):
    m = re.match(r"<!-- example: (lua|model|sh) -->$", lines[i])
    if not m:
        i += 1
        continue
    text, after = fenced(i + 1)
    if text is None:
        sys.exit(f"{readme}:{i + 1}: '<!-- example -->' is not followed by a fenced block")
    n += 1
    open(f"{outdir}/{n}.{m.group(1)}", "w").write(text)
    open(f"{outdir}/{n}.line", "w").write(f"{i + 1}\n")
    if after < len(lines) and lines[after] == "<!-- output -->":
        out, after = fenced(after + 1)
        if out is None:
            sys.exit(f"{readme}:{after}: '<!-- output -->' is not followed by a fenced block")
        open(f"{outdir}/{n}.out", "w").write(out)
    i = after

text = "\n".join(lines)
open(f"{outdir}/documented", "w").write("\n".join(sorted(set(re.findall(r"`([^`\n]+)`", text)))) + "\n")
open(f"{outdir}/targets", "w").write("\n".join(sorted(set(re.findall(r"`make ([a-z0-9-]+)", text)))) + "\n")
print(n)
