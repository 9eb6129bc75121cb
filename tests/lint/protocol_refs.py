#!/usr/bin/env python3
"""References into docs/PROTOCOL.md name its sections by title, and each title is a heading it has.

The one form (docs/ARCHITECTURE.md, "Idioms"):

    docs/PROTOCOL.md, "Frame protection"
    docs/PROTOCOL.md, "hello" and "authenticate"
    docs/PROTOCOL.md, "hello", "authenticate" and "Threat model"

A number ("PROTOCOL.md 2.5", "PROTOCOL.md section 9", "PROTOCOL 5") fails: renumbering the
document would silently point it elsewhere. A quoted title that is no heading of the document
fails. A reference may wrap onto the next comment line. A bare "docs/PROTOCOL.md" (the whole
document) passes.

Run by tests/lint/idioms.sh: protocol_refs.py [FILE...] (default: the repository's tracked files).
Prints FILE:LINE: text and why for each bad reference; exit status 1 if any.
"""
import os
import re
import subprocess
import sys

SPEC = "docs/PROTOCOL.md"
SUFFIXES = (".c++", ".h", ".capnp", ".md", ".sh", ".bzl", ".py", ".txt", ".cmake", ".in")
# A comment marker at the start of a continuation line: //, #, *, or a markdown quote.
CONTINUATION = re.compile(r"^\s*(//+|#+(?!\w)|\*|>)?\s*")
# "PROTOCOL.md" or "PROTOCOL" as a word (not PROTOCOL_VERSION), after an optional markdown link
# text: [docs/PROTOCOL.md](../../docs/PROTOCOL.md).
REFERENCE = re.compile(r"\bPROTOCOL(\.md)?(\]\([^)]*\))?(?!\w)")
NUMBERED = re.compile(r"^('s)?[,:]?\s*\(?(sections?\s+|§\s*)?\d")
TITLES = re.compile(r'^,\s*("[^"]+")((\s*,\s*|\s+and\s+|\s*,\s*and\s+)"[^"]+")*')


def headings(root):
    with open(os.path.join(root, SPEC), encoding="utf-8") as f:
        return {
            re.sub(r"^#{2,3}\s+(\d+(\.\d+)*\.?\s+)?", "", line).strip()
            for line in f
            if re.match(r"^#{2,3}\s", line)
        }


def joined(text):
    """The file's lines joined by spaces, comment markers of continuation lines dropped, and the
    offset at which each line starts in the joined text."""
    parts, starts, at = [], [], 0
    for i, line in enumerate(text.split("\n")):
        if i > 0:
            line = CONTINUATION.sub("", line, count=1)
            parts.append(" ")
            at += 1
        starts.append(at)
        parts.append(line)
        at += len(line)
    return "".join(parts), starts


def line_of(starts, offset):
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check(path, text, titles):
    bad = []
    flat, starts = joined(text)
    lines = text.split("\n")
    for m in REFERENCE.finditer(flat):
        rest = flat[m.end():]
        why = None
        if NUMBERED.match(rest):
            why = "a section number; name the section by its title"
        else:
            t = TITLES.match(rest)
            if t:
                for title in re.findall(r'"([^"]+)"', t.group(0)):
                    if title not in titles:
                        why = f'no heading "{title}"'
                        break
        if why:
            n = line_of(starts, m.start())
            bad.append(f"{path}:{n + 1}: {lines[n].strip()} ({why})")
    return bad


def main(argv):
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                          text=True, check=True).stdout.strip()
    titles = headings(root)
    if argv:
        files = argv
    else:
        os.chdir(root)
        tracked = subprocess.run(["git", "ls-files"], capture_output=True, text=True,
                                 check=True).stdout.split("\n")
        files = [f for f in tracked
                 if f and f != SPEC and not f.startswith("tests/lint/")
                 and (f.endswith(SUFFIXES) or os.path.basename(f).startswith("BUILD"))]
    bad = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        bad += check(path, text, titles)
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
