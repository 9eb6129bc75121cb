// Prints <harrow/flags.h>'s table as docs/REFERENCE.md's settings table has it (flag, variable,
// values), for //docs:flags_test to compare: the table harrow::main parses with is the one the
// reference shows.
//   bazel run //docs:settings_table

#include <harrow/flags.h>

#include <stdio.h>

int main() {
  fputs(harrow::settingsMarkdown().cStr(), stdout);
  return 0;
}
