// The ids of the annotations in idl/harrow/actor.capnp (capnp's C++ generator emits no constants
// for annotations). Keep in step with that file.

#pragma once

#include <cstdint>

namespace harrow::codegen {

constexpr uint64_t ACTOR_ANNOTATION_ID = 0x96285979feac03a8ull;    // $Harrow.actor
constexpr uint64_t STREAM_ANNOTATION_ID = 0xe59b6c2f1a4a5bd1ull;   // $Harrow.stream
constexpr uint64_t CONTEXT_ANNOTATION_ID = 0xbd7d92b3bbb355a0ull;  // $Harrow.context

}  // namespace harrow::codegen
