#!/usr/bin/env bash
# Runs debugger_test.py (pexpect drives the program through a pseudo-terminal) on the program
# given as $1. Needs gdb and python3-pexpect (./dev installs them).
set -euo pipefail
exec python3 "$(dirname "$0")/debugger_test.py" "$1"
