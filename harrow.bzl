"""Build settings shared by every harrow target."""

# Project code is warning-free; system headers are exempt by the compiler.
HARROW_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-unused-parameter",
]
