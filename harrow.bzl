"""Build settings shared by every harrow target."""

# Project code is warning-free; system headers are exempt by the compiler.
HARROW_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-unused-parameter",
]

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
        cmd = "capnp compile -I idl --no-standard-import -I /usr/include -oc++:$(GENDIR) " +
              " ".join(["$(location %s)" % s for s in srcs]),
        visibility = ["//visibility:private"],
    )
    native.cc_library(
        name = name,
        srcs = [s + ".c++" for s in srcs],
        hdrs = [s + ".h" for s in srcs],
        deps = deps + ["//third_party/system:capnp"],
        includes = includes,
        visibility = visibility,
    )
