#!/usr/bin/env python3
"""Coroutines that use a borrowed parameter after they first suspend (docs/ARCHITECTURE.md,
"Idioms": a coroutine copies what it borrows before it suspends).

A coroutine here is a function or lambda returning Co<...>, harrow::Co<...> or kj::Promise<...>
whose body has a co_await. A borrowed parameter is a kj::StringPtr, a kj::ArrayPtr<...>, an
lvalue reference (T&, const T&; not in a lambda, see borrowed()) or a kj::Maybe<T&>: what it
points at belongs to the caller, and a caller that does not await at once (a temporary string, a
task started with startSoon) may destroy it while the coroutine is suspended. Such a parameter must not be named after the
coroutine's first co_await (its operand is evaluated before suspending: `co_await connect(name)`
is fine), unless the parameter's line says why it outlives the call in a // comment:

    Co<void> serve(Actor& actor,  // outlives every task: the actor owns the nursery
                   kj::StringPtr nameParam) {
      auto name = kj::str(nameParam);  // the copy is used after the co_await below
      ...

A heuristic on the text (comments and strings blanked, brackets matched), not a parser: it may
flag a reference whose owner provably outlives the call (say so on the line), and it misses a
parameter used through an alias, or only in a loop's header before the loop's first co_await.
The first co_await is the first in the text, a coroutine lambda's inside the body included (what
such a lambda captures is used while the function is suspended). Usage: coroutine_params.py PATH... (files or folders of
.c++/.h); prints FILE:LINE: PARAMETER in FUNCTION, exit status 1 if any.
"""
import os
import re
import sys

RETURN = re.compile(r"(?<![\w:])(?:harrow::)?Co<|(?<![\w:])kj::Promise<")
LAMBDA_RETURN = re.compile(r"->\s*(?:harrow::)?Co<|->\s*kj::Promise<")
POINTERS = re.compile(r"(?<![\w:])(?:kj::)?(?:StringPtr|ArrayPtr)\b")
REFERENCE = re.compile(r"(?<!&)&(?!&)")
MAYBE_REFERENCE = re.compile(r"(?<![\w:])(?:kj::)?Maybe\s*<[^<>]*(?<!&)&\s*>")
QUALIFIERS = re.compile(r"\s*(?:const|override|final|noexcept|mutable|&)?\s*")


def blank(text):
    """The text with comments, string and character literals replaced by spaces (newlines kept),
    so that offsets and line numbers stay those of the original."""
    out = list(text)
    i, n = 0, len(text)

    def wipe(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            wipe(i, j)
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            wipe(i, j)
            i = j
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not text[i - 1].isalnum()):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if not m:
                i += 1
                continue
            end = text.find(")" + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            wipe(i + 1, j)
            i = j
        elif c in "\"'":
            if c == "'" and i > 0 and text[i - 1].isalnum():  # a digit separator: 1'000
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            wipe(i + 1, min(j, n))
            i = j + 1
        else:
            i += 1
    return "".join(out)


def match(text, i, open_, close):
    """The offset just past the bracket that closes the one at text[i]."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_:
            depth += 1
        elif text[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def angle_end(text, i):
    """Past the '>' closing the '<' at text[i] (template arguments; no comparisons expected)."""
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
            if depth == 0:
                return j + 1
        elif c in ";{}":
            return -1
    return -1


def split_params(params):
    parts, depth, start = [], 0, 0
    for j, c in enumerate(params):
        if c in "<([{":
            depth += 1
        elif c in ">)]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append((start, params[start:j]))
            start = j + 1
    if params[start:].strip():
        parts.append((start, params[start:]))
    return parts


def first_suspension_end(body):
    """Where the statement of the body's first co_await ends (its operand is evaluated before
    suspending: `co_await errorOf([&]() { return connect(name); })` uses `name` before), or where
    a coroutine lambda inside that operand opens (it may run on after suspending); -1 if the body
    has no co_await."""
    m = re.search(r"\bco_await\b", body)
    if not m:
        return -1
    depth, j = 0, m.end()
    while j < len(body):
        c = body[j]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "{" and depth > 0:
            block_end = match(body, j, "{", "}")
            if re.search(r"\bco_await\b", body[j:block_end]):
                return j
            j = block_end
            continue
        elif c in "{}" or (c == ";" and depth <= 0):
            return j
        j += 1
    return len(body)


def heads(flat):
    """(name, params_start, params_end, body_start, body_end) of each function or lambda whose
    return type is a Co or a kj::Promise, that has a body."""
    for m in RETURN.finditer(flat):
        end = angle_end(flat, m.end() - 1)
        if end < 0:
            continue
        f = re.match(r"\s+([\w:~]+(?:\s*<[^;{}()]*>)?(?:::\w+)?|operator\(\))\s*\(", flat[end:])
        if not f:
            continue
        p = end + f.end() - 1
        q = match(flat, p, "(", ")")
        b = re.match(r"[\s\w&:]*?\{", flat[q:q + 200])
        if not b or re.search(r"[;=]", b.group(0)):
            continue
        body = q + b.end() - 1
        yield f.group(1), p + 1, q - 1, body, match(flat, body, "{", "}")
    for m in LAMBDA_RETURN.finditer(flat):
        end = angle_end(flat, m.end() - 1)
        if end < 0:
            continue
        b = re.match(r"\s*\{", flat[end:])
        if not b:
            continue
        # The parameter list: the parenthesis before `mutable`/`->`, after the capture.
        before = flat[:m.start()].rstrip()
        before = re.sub(r"\b(mutable|noexcept)\s*$", "", before).rstrip()
        if not before.endswith(")"):
            continue
        depth, p = 0, len(before) - 1
        while p >= 0:
            if before[p] == ")":
                depth += 1
            elif before[p] == "(":
                depth -= 1
                if depth == 0:
                    break
            p -= 1
        if not before[:p].rstrip().endswith("]"):
            continue
        body = end + b.end() - 1
        yield "a lambda", p + 1, len(before) - 1, body, match(flat, body, "{", "}")


def outer(type_):
    """The type without its template arguments: kj::Function<void(kj::StringPtr)> is owned."""
    while True:
        stripped = re.sub(r"<[^<>]*>", "@", type_)
        if stripped == type_:
            return stripped
        type_ = stripped


def borrowed(type_, in_lambda):
    if POINTERS.search(outer(type_)) or MAYBE_REFERENCE.search(type_):
        return True
    # A lambda's T& is the block pattern (openNursery, openStream, a context's body): the function
    # that calls the block owns what it lends and awaits the block.
    return not in_lambda and REFERENCE.search(outer(type_)) is not None


def check(path, text):
    flat = blank(text)
    lines = text.split("\n")
    found = []
    for name, ps, pe, bs, be in heads(flat):
        body = flat[bs + 1:be - 1]
        after = first_suspension_end(body)
        if after < 0:
            continue
        for offset, param in split_params(flat[ps:pe]):
            declared = re.sub(r"=.*", "", param, flags=re.S).strip()
            ident = re.search(r"(\w+)\s*(\[\s*\])?$", declared)
            if not ident or not borrowed(declared[:ident.start()], name == "a lambda"):
                continue
            pname = ident.group(1)
            if not re.search(r"(?<![\w.>:])" + re.escape(pname) + r"\b", body[after:]):
                continue
            at = ps + offset + re.sub(r"=.*", "", param, flags=re.S).rindex(pname)
            line = flat.count("\n", 0, at)
            if "//" in lines[line]:
                continue  # the line says why it outlives the call
            found.append(f"{path}:{line + 1}: {declared.split()[-1]} in {name}")
    return found


def main(argv):
    found = []
    for root in argv:
        paths = [root] if os.path.isfile(root) else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
            if f.endswith((".c++", ".h")))
        for path in paths:
            with open(path, encoding="utf-8") as f:
                found += check(path, f.read())
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
