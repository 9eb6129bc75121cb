"""One Bazel target per layer of the runtime (docs/ARCHITECTURE.md)."""

load("//:harrow.bzl", "HARROW_COPTS")

def harrow_layer(name, hdrs, srcs = [], deps = [], **kwargs):
    """A layer of harrow's runtime: headers public as <harrow/LAYER/x.h>.

    Headers under a layer's internal/ folder go in `srcs`: its own sources include them by
    workspace path ("runtime/LAYER/internal/x.h"), nothing above the layer can. `deps` name only
    layers below this one; Bazel then refuses any include that points up or sideways.
    `<name>_headers` is the public headers as files (tests/compile_fail compiles against them).
    """
    native.filegroup(
        name = name + "_headers",
        srcs = hdrs,
        visibility = ["//visibility:public"],
    )
    native.cc_library(
        name = name,
        hdrs = hdrs,
        srcs = srcs,
        deps = deps,
        copts = HARROW_COPTS,
        strip_include_prefix = "/runtime",
        include_prefix = "harrow",
        **kwargs
    )
