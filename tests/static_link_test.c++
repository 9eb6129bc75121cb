// The default link of a harrow program (harrow_cc_binary, harrow.bzl's HARROW_STATIC_LINKOPTS):
// its first exception finds its frames in the table the linker sorted (PT_GNU_EH_FRAME), and does
// not sort the whole program's unwind tables at run time.
//
//   bazel test //tests:static_link_test
//
// Why it matters: every actor's teardown raises Cancelled; with crtbeginT's registration (what a
// plain -static link does), libgcc sorted ~23,000 FDEs on that first exception, 2.5 ms of CPU in
// every process (10,000 children took 47 s to cancel; bench/README.md). Sanitized builds link
// shared libraries and register nothing either, so the test holds in every build.

#include <kj/common.h>

#include <gtest/gtest.h>

#include <link.h>
#include <malloc.h>

#include <stdexcept>

namespace {

size_t allocatedBytes() {
  struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;  // the heap's blocks in use, and the mmap()ed ones
}

bool programHasLinkedUnwindTable() {
  bool found = false;
  dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) -> int {
        for (size_t i = 0; i < info->dlpi_phnum; ++i) {
          if (info->dlpi_phdr[i].p_type == PT_GNU_EH_FRAME) *static_cast<bool*>(data) = true;
        }
        return 1;  // the program itself comes first
      },
      &found);
  return found;
}

[[gnu::noinline]] void throwFrom(int depth) {
  if (depth == 0) throw std::runtime_error("the first exception of this process");
  throwFrom(depth - 1);
}

// The process's first exception (gtest throws none of its own).
TEST(StaticLinkTest, TheFirstExceptionSortsNoUnwindTablesAtRunTime) {
  EXPECT_TRUE(programHasLinkedUnwindTable());
  size_t before = allocatedBytes();
  bool caught = false;
  try {
    throwFrom(3);
  } catch (const std::runtime_error&) {
    caught = true;
  }
  size_t after = allocatedBytes();
  EXPECT_TRUE(caught);
  // The exception object comes and goes; a run-time sort keeps an array of every FDE of the
  // program, 8 bytes each (33 KB here, 180 KB in an actor).
  EXPECT_LT(after - kj::min(after, before), 16u * 1024)
      << "the first exception kept " << after - before << " bytes";
}

}  // namespace
