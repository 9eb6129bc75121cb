// harrow's release version, written here and nowhere else:
//
//   printf("built with harrow %s\n", harrow::VERSION.cStr());
//
// CMakeLists.txt reads HARROW_VERSION from this file for its project version, so harrow.pc,
// HarrowConfigVersion.cmake (find_package(Harrow 0.1)), the .deb packages (./dev deb) and the
// release tarball (./dev dist) carry the same one; `harrow --version` prints it beside the wire
// protocol's version (wire.capnp's protocolVersion, checked in every handshake). CHANGELOG.md
// says what each version changed. 0.x: a minor version may break the API or the protocol.

#pragma once

#include <kj/string.h>

#define HARROW_VERSION "0.1.0"

namespace harrow {

constexpr kj::StringPtr VERSION = HARROW_VERSION ""_kj;

}  // namespace harrow
