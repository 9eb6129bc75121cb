#!/usr/bin/env bash
# docs/REFERENCE.md's settings table shows the table harrow::main parses its flags with
# (<harrow/flags.h>): the same rows in the same order, each with the same flag, variable and
# values (default). The last column, what each does at length, is the document's own.
#   docs/flags_test.sh SETTINGS_TABLE_PROGRAM REFERENCE.md
set -euo pipefail
program="$1" reference="$2"

# The table's rows (from its header to the first blank line), cut after the third column.
documented=$(sed -n '/^| flag | variable | values (default) |/,/^$/p' "$reference" |
             grep '^| ' | tail -n +2 | sed -E 's/^(\|[^|]*\|[^|]*\|[^|]*\|).*/\1/')
[ -n "$documented" ] || { echo "no '| flag | variable | values (default) |' table in $reference"; exit 1; }

if ! diff -u <(echo "$documented") <("$program"); then
  echo "docs/REFERENCE.md's settings table (-) and runtime/flags.c++'s table (+) disagree:"
  echo "change both, or fix the one that is wrong"
  exit 1
fi
