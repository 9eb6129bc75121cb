"""The generated code checked in under generated/, for review and as a golden test."""

# The `<name>_harrow_srcs` filegroups of harrow_capnp_library targets (capnpc-harrow's output
# only). Add an example schema here and run `bazel run //codegen:update_generated`.
CHECKED_IN_GENERATED = [
    "//examples/counter:counter_capnp_harrow_srcs",
    "//examples/multi_program:greeter_capnp_harrow_srcs",
    "//examples/tree:tree_capnp_harrow_srcs",
    "//idl:introspect_capnp_harrow_srcs",
    "//idl:registry_capnp_harrow_srcs",
    "//tests/codegen:edge_capnp_harrow_srcs",
    "//tests/codegen:edge_common_capnp_harrow_srcs",
]
