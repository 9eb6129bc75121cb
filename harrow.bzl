"""harrow's Bazel macros: load("@harrow//:harrow.bzl", "harrow_capnp_library") from any workspace.

Every label below is resolved against harrow's own repository (Label(...)), not the caller's, so
the macros work the same from harrow's tree and from a project that has harrow as an external
repository (local_repository, http_archive, ...).
"""

def _harrow(label):
    return str(Label(label))

# Where capnp finds harrow's schemas (`import "/harrow/actor.capnp"`): idl/ of harrow's
# repository, which is external/harrow/idl when harrow is an external repository.
def _idl_dir():
    root = Label("//idl:BUILD.bazel").workspace_root
    return root + "/idl" if root else "idl"

# Project code is warning-free; system headers are exempt by the compiler.
HARROW_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-unused-parameter",
]

# Fully static linking: no shared library to map or relocate in each actor. harrow_cc_binary
# links this way by default; for a plain cc_binary:
#   cc_binary(name = "x", srcs = [...], deps = [...],
#             features = HARROW_STATIC_FEATURES, linkopts = HARROW_STATIC_LINKOPTS)
# Measured by bench/idle_bench (bench/README.md): an idle actor's VmRSS 7.0 -> 4.4 MB (private
# 1.1 -> 0.16 MB), spawn + first call by exec 2.05 -> 1.14 ms. Not for sanitizer builds (their
# runtimes are shared libraries). A static glibc still loads its NSS modules, of the same glibc
# version, for host name lookups (getaddrinfo): build on the distribution the program runs on.
#
# The unwind tables are found as a dynamic program's are: through PT_GNU_EH_FRAME, a table sorted
# at link time (--eh-frame-hdr, which gcc passes for every link but a -static one), and not
# registered at startup. crtbeginT.o, the start file of a -static link, registers the program's
# .eh_frame with libgcc (__register_frame_info), and libgcc then sorts every FDE of the program
# (about 23,000 in an actor) on its first exception: 2.5 ms of CPU in each process, paid by every
# actor at its first Cancelled (spawn_bench: 10,000 exec'd children took 47 s to cancel, 1,000
# took 15.7 s; bench/README.md "Where the exec teardown went"). The --wrap options redirect
# crtbeginT's weak references to symbols nothing defines, so it registers nothing (it calls them
# only when they are defined), and the first exception looks its frame up in the linked table.
HARROW_STATIC_FEATURES = ["fully_static_link"]
HARROW_STATIC_LINKOPTS = [
    "-static",
    "-Wl,--eh-frame-hdr",
    "-Wl,--wrap=__register_frame_info",
    "-Wl,--wrap=__deregister_frame_info",
]

# HARROW_STATIC_* unless the build is sanitized (//:link_shared: harrow's --config=asan, tsan,
# ubsan, or any -fsanitize=address/thread/undefined copt) or --define=harrow_static=off.
def _static_link(kwargs):
    shared = _harrow("//:link_shared")
    kwargs["features"] = kwargs.get("features", []) + select({
        shared: [],
        "//conditions:default": HARROW_STATIC_FEATURES,
    })
    kwargs["linkopts"] = kwargs.get("linkopts", []) + select({
        shared: [],
        "//conditions:default": HARROW_STATIC_LINKOPTS,
    })

# Line tables (-g1) and no stripping, so a remote error's trace names the file:line of each of
# the user's frames (runtime/engine/internal/symbolize.h) in every build, not only in -c dbg.
# -g1 costs no run time; the binary grows by its line tables (not mapped: no resident memory).
# harrow_cc_binary adds them; `line_tables = False` compiles a target as plain cc_binary does.
def _line_table_copts(copts):
    # After the toolchain's flags: -c dbg's -g must not become -g1.
    return copts + select({
        _harrow("//:dbg"): [],
        "//conditions:default": ["-g1"],
    })

# Bazel strips fastbuild binaries (--strip=sometimes, `-Wl,-S`: line tables too), and a target
# cannot turn that off; this transition builds the program with --strip=never instead.
def _never_strip_impl(settings, attr):
    return {"//command_line_option:strip": "never"}

_never_strip = transition(
    implementation = _never_strip_impl,
    inputs = [],
    outputs = ["//command_line_option:strip"],
)

def _unstripped_impl(ctx):
    binary = ctx.attr.binary[0]
    executable = ctx.actions.declare_file(ctx.label.name)
    ctx.actions.symlink(output = executable, target_file = binary[DefaultInfo].files_to_run.executable)
    runfiles = ctx.runfiles(files = [executable]).merge(binary[DefaultInfo].default_runfiles)
    return [DefaultInfo(executable = executable, runfiles = runfiles)]

_unstripped_binary = rule(
    implementation = _unstripped_impl,
    attrs = {
        "binary": attr.label(cfg = _never_strip, executable = True, mandatory = True),
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
    executable = True,
)

def harrow_cc_binary(name, line_tables = True, static = True, visibility = None, tags = [], **kwargs):
    """cc_binary for an actor program: fully static, with line tables.

    Takes cc_binary's attributes.

    `static` (default True) links the program fully statically (HARROW_STATIC_*): each actor maps
    no shared library, so an idle one is about 4.4 MB resident instead of 7 (bench/README.md).
    Sanitizer builds (--config=asan/tsan/ubsan, or any -fsanitize=address/thread/undefined
    copt) and `--define=harrow_static=off` link shared libraries instead; `static = False` does so
    for this target always.

    `line_tables` (default True): remote errors name file:line. The program is then `name`, a
    link to the cc_binary `name + "_linked"` built with --strip=never. `line_tables = False` makes
    it one cc_binary (traces then name functions only, and fastbuild strips the binary).
    """
    if static:
        _static_link(kwargs)
    if not line_tables:
        native.cc_binary(name = name, visibility = visibility, tags = tags, **kwargs)
        return
    kwargs["copts"] = _line_table_copts(kwargs.get("copts", []))
    native.cc_binary(name = name + "_linked", tags = tags + ["manual"], **kwargs)
    _unstripped_binary(name = name, binary = name + "_linked", visibility = visibility, tags = tags)

def harrow_cc_test(name, **kwargs):
    """cc_test linked as harrow_cc_binary links a program: fully static unless sanitized.

    For tests of what the default link gives a program (its unwind tables, its footprint).
    """
    _static_link(kwargs)
    kwargs.setdefault("linkstatic", True)  # a test links its libraries' .so files otherwise
    native.cc_test(name = name, **kwargs)

def capnp_cc_library(name, srcs, deps = [], capnp_deps = [], includes = [], visibility = None):
    """Compiles .capnp schemas with capnp's C++ generator into one cc_library.

    Schemas import each other by absolute path rooted at idl/ (`import "/harrow/wire.capnp"`) or
    relative to their own folder; `capnp_deps` lists the .capnp files they import from other
    packages. Generated headers are included as "<package>/<file>.capnp.h" or, with
    includes = ["."], relative to the package (how capnp's generated code includes imports).
    """
    outs = [s + ".h" for s in srcs] + [s + ".c++" for s in srcs]
    native.genrule(
        name = name + "_gen",
        srcs = srcs + capnp_deps,
        outs = outs,
        # (mkdir: a schema that imports none of harrow's has none of idl/ among its inputs.)
        cmd = "mkdir -p " + _idl_dir() + " && capnp compile -I " + _idl_dir() +
              " --no-standard-import -I /usr/include -oc++:$(GENDIR) " +
              " ".join(["$(location %s)" % s for s in srcs]),
        visibility = ["//visibility:private"],
    )
    native.filegroup(
        name = name + "_headers",
        srcs = [s + ".h" for s in srcs],
        visibility = ["//visibility:public"],
    )
    native.cc_library(
        name = name,
        srcs = [s + ".c++" for s in srcs],
        hdrs = [s + ".h" for s in srcs],
        deps = deps + [_harrow("//third_party/system:capnp")],
        includes = includes,
        visibility = visibility,
    )

def harrow_capnp_library(name, srcs, deps = [], capnp_deps = [], includes = [], visibility = None):
    """Compiles .capnp schemas with capnp's C++ generator and capnpc-harrow into one cc_library.

    For each schema `x.capnp` the library has capnp's `x.capnp.h` and harrow's
    `x.capnp.harrow.h` (include it as "<package>/x.capnp.harrow.h", or relative to the package with
    includes = ["."]): for every interface marked
    `$Harrow.actor`, FooActor::Server and FooActor::Portal. A schema without actor interfaces
    still yields both harrow files (saying so), so the outputs follow from the file names.

    Imports work as in capnp_cc_library: `import "/harrow/actor.capnp"` (rooted at idl/) or
    relative to the schema's folder; list .capnp files imported from other packages in
    `capnp_deps` and their libraries in `deps`. `<name>_harrow_srcs` is a filegroup of just
    capnpc-harrow's output (generated/ checks it in for the examples).
    """
    capnp_outs = [s + ".h" for s in srcs] + [s + ".c++" for s in srcs]
    harrow_outs = [s + ".harrow.h" for s in srcs] + [s + ".harrow.c++" for s in srcs]
    plugin = _harrow("//codegen:capnpc-harrow")
    native.genrule(
        name = name + "_gen",
        srcs = srcs + capnp_deps + [_harrow("//idl:harrow/actor.capnp")],
        outs = capnp_outs + harrow_outs,
        tools = [plugin],
        cmd = "capnp compile -I " + _idl_dir() + " --no-standard-import -I /usr/include " +
              "-oc++:$(GENDIR) -o$(location %s):$(GENDIR) " % plugin +
              " ".join(["$(location %s)" % s for s in srcs]),
        visibility = ["//visibility:private"],
    )
    native.filegroup(
        name = name + "_harrow_srcs",
        srcs = harrow_outs,
        visibility = ["//visibility:public"],
    )
    native.filegroup(
        name = name + "_headers",
        srcs = [s + ".h" for s in srcs] + [s + ".harrow.h" for s in srcs],
        visibility = ["//visibility:public"],
    )
    native.cc_library(
        name = name,
        srcs = [s + ".c++" for s in srcs] + [s + ".harrow.c++" for s in srcs],
        hdrs = [s + ".h" for s in srcs] + [s + ".harrow.h" for s in srcs],
        copts = HARROW_COPTS,
        deps = deps + [
            _harrow("//idl:actor_capnp"),
            _harrow("//idl:wire_capnp"),
            _harrow("//runtime/typed"),
            _harrow("//third_party/system:capnp"),
            _harrow("//third_party/system:capnp_rpc"),
            _harrow("//third_party/system:kj"),
            _harrow("//third_party/system:kj_async"),
        ],
        includes = includes,
        visibility = visibility,
    )
