#!/usr/bin/env python3
"""Each Bazel target lists the layers its files include directly (run by ./dev lint).

    tests/lint/layer_deps.py          # from the repository root; exit status 1 on a miss

A target whose sources include <harrow/LAYER/x.h> has //runtime/LAYER in its deps, and one that
includes a top header (<harrow/harrow.h>, <harrow/main.h>, ...) has //runtime:harrow, even when
another dependency brings that layer along: a target then keeps building when a layer it does not
name drops a dependency of its own, and its BUILD file says what it uses (issue 23, item 7).
runtime/'s layers are also checked against CMakeLists.txt, by CMake (cmake/HarrowLayers.cmake).

Reads the BUILD files of runtime/, programs/ and tests/ as Starlark (Python syntax): every call
with srcs or hdrs (cc_library, cc_test, harrow_layer, the test macros), globs expanded. No build.
"""

import ast
import glob
import os
import re
import sys

LAYERS = {"co", "ipc", "typed", "engine", "actor", "discovery", "spawn", "node"}
FOLDERS = ["runtime", "programs", "tests"]
INCLUDE = re.compile(r'\s*#\s*include\s*<(harrow/[^>]+)>')


def layer_of(include):
    """The target that provides <include>, if it is a layer's header."""
    m = re.match(r"harrow/([a-z_]+)/", include)
    if m and m.group(1) in LAYERS:
        return "//runtime/" + m.group(1)
    if re.match(r"harrow/[A-Za-z_]+\.h$", include):  # not a schema's (x.capnp.h)
        return "//runtime:harrow"
    return None


def normalize(label, package):
    if label.startswith(":"):
        return "//" + package + label
    m = re.match(r"^//([a-z_/]+):([a-z_]+)$", label)
    if m and m.group(1).split("/")[-1] == m.group(2):
        return "//" + m.group(1)
    return label


def evaluate(node, package):
    """A list expression of a BUILD file: literals, glob([...]) and `+`; None if it is none."""
    if isinstance(node, ast.List):
        out = []
        for element in node.elts:
            if isinstance(element, ast.Constant) and isinstance(element.value, str):
                out.append(element.value)
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = evaluate(node.left, package), evaluate(node.right, package)
        return (left or []) + (right or [])
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "glob" and node.args:
        out = []
        for pattern in evaluate(node.args[0], package) or []:
            for path in glob.glob(os.path.join(package, pattern)):
                out.append(os.path.relpath(path, package))
        return out
    return None


def files(entries, package):
    for entry in entries:
        if entry.startswith("//"):
            pkg, _, name = entry[2:].partition(":")
            path = os.path.join(pkg, name)
        elif entry.startswith(":"):
            continue
        else:
            path = os.path.join(package, entry)
        if os.path.isfile(path) and re.search(r"\.(c\+\+|h)$", path):
            yield path


def main():
    misses = 0
    for folder in FOLDERS:
        for build in sorted(glob.glob(folder + "/**/BUILD.bazel", recursive=True)):
            package = os.path.dirname(build)
            tree = ast.parse(open(build).read(), build)
            for statement in tree.body:
                call = statement.value if isinstance(statement, ast.Expr) else None
                if not isinstance(call, ast.Call):
                    continue
                kwargs = {k.arg: k.value for k in call.keywords if k.arg}
                sources = []
                for attribute in ("srcs", "hdrs", "textual_hdrs"):
                    if attribute in kwargs:
                        sources += evaluate(kwargs[attribute], package) or []
                if not sources:
                    continue
                name = kwargs.get("name")
                name = name.value if isinstance(name, ast.Constant) else "?"
                own = "//" + package if package != "runtime" else "//runtime:harrow"
                deps = {normalize(d, package) for d in evaluate(kwargs.get("deps", ast.List([])), package) or []}
                needed = {}
                for path in files(sources, package):
                    for line in open(path, errors="replace"):
                        m = INCLUDE.match(line)
                        layer = m and layer_of(m.group(1))
                        if layer and layer != own and layer not in deps:
                            needed.setdefault(layer, path)
                for layer, path in sorted(needed.items()):
                    print(f"{build}: {name} includes {layer}'s headers ({path}) but does not "
                          f"list {layer} in its deps")
                    misses += 1
    if misses:
        print("layer deps: list each layer a target includes directly (not through another dep)")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
