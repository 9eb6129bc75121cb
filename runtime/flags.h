// The settings of a harrow program in one table: every --harrow-* flag harrow::main reads from
// the root's command line and every HARROW_* variable the runtime reads, with what each takes.
// The table drives three things, so that they cannot drift apart: harrow::main's parsing, what
// --harrow-help prints, and docs/REFERENCE.md's settings table (whose first three columns
// //docs:flags_test compares with settingsMarkdown()). Python's argparse keeps its options as
// such a list of records too; this one is plain data, read by the functions below.
//
//   for (const harrow::Setting& setting : harrow::settings()) {
//     if (setting.parse == harrow::Parse::VALUE) printf("%s=%s\n", setting.flag, setting.argument);
//   }
//
// A flag becomes the environment variable beside it (setenv, before any child starts), so every
// child inherits it and a tree runs with one setting; a variable set before the program started
// works alike, and a flag given wins over it.

#pragma once

#include <kj/array.h>
#include <kj/string.h>

namespace harrow {

// What harrow::main does with a setting's flag.
enum class Parse {
  VALUE,             // --harrow-x=VALUE sets the variable to VALUE
  SWITCH,            // --harrow-x sets the variable to "1"
  ROOT_NAME,         // --harrow-name=NAME names the root actor (no variable: children get theirs)
  HELP,              // --harrow-help prints settingsHelp() and runs nothing
  CHILD_MODE,        // --harrow-child, --harrow-ssh-child, --harrow-slurm-child: started as a child
  ENVIRONMENT_ONLY,  // no flag: a variable only
};

struct Setting {
  kj::StringPtr flag;      // "--harrow-log"; empty for ENVIRONMENT_ONLY
  kj::StringPtr argument;  // what follows the flag: "LEVEL" (after '='); empty for a switch
  kj::StringPtr variable;  // "HARROW_LOG"; empty when there is none
  kj::StringPtr values;    // what it takes and, in parentheses, its default (Markdown)
  kj::StringPtr help;      // one line for --harrow-help
  Parse parse;
  // Throws, naming what is accepted, if the variable's value is refused; harrow::main checks it at
  // start, before any child runs. nullptr: checked where it is read, or anything goes.
  void (*check)() = nullptr;
};

// Every setting, in docs/REFERENCE.md's order.
kj::ArrayPtr<const Setting> settings();

// What harrow::main took from the root's command line (besides the variables it set).
struct RootFlags {
  kj::Maybe<kj::StringPtr> name;  // --harrow-name=NAME, the last non-empty one; points into argv
  bool help = false;              // --harrow-help
};

// Sets the variable of every VALUE and SWITCH flag among argv[1..argc) (the last one given wins)
// and returns the rest. Arguments that are not harrow's are left to the program.
RootFlags applyFlags(int argc, char** argv);

// For a program of its own beside harrow::main (harrow-node): if `arg` is one of the `accepted`
// flags ({"--harrow-log"_kj, ...}) written as the table says, sets its variable and returns true.
bool applyFlag(kj::StringPtr arg, kj::ArrayPtr<const kj::StringPtr> accepted);

// What --harrow-help prints: every setting users may give, its variable, values and help line.
kj::String settingsHelp();

// docs/REFERENCE.md's table rows, first three columns: | flag | variable | values (default) |.
kj::String settingsMarkdown();

}  // namespace harrow
