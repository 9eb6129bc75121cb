#!/usr/bin/env python3
"""The tree debugger through a real terminal.

Runs debug_program (root -> mid -> leaves) with --harrow-debug in a pseudo-terminal, as a user at
a shell would, and answers gdb there. Every expect has a timeout, but only as a guard against a
hang: each step waits for what the program prints, never for time to pass. Checks, for every run,
that no process of the program's session (actors, gdb) is left once the root has exited.

  debugger_test.py PATH/TO/debug_program
"""

import os
import re
import select
import socket
import subprocess
import sys
import time

import pexpect

PROGRAM = sys.argv[1]
GUARD = 60  # seconds: a failure guard for each expect, never a pace
GDB = r"\(gdb\) "
BANNER = r"harrow debugger: actor '(mid\.\d)' \(pid (\d+)\) stopped: "

failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAIL:", what, flush=True)


def start(*args):
    env = dict(os.environ)
    env.update({"TERM": "dumb", "HARROW_REGISTRY": "none"})
    child = pexpect.spawn(PROGRAM, ["--harrow-debug", *args], env=env, encoding="utf-8",
                          timeout=GUARD, dimensions=(500, 250))
    child.logfile_read = Transcript()
    return child


class Transcript:
    """Everything the program wrote to the terminal: echoed to the test's log, and kept."""

    def __init__(self):
        self.text = ""

    def write(self, data):
        self.text += data
        sys.stdout.write(data)

    def flush(self):
        sys.stdout.flush()


def wait_for_exit(pid, timeout):
    """Waits until process `pid` (not necessarily a child) has exited, at most `timeout` s."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def session_processes(sid):
    """The processes (zombies included) of session `sid`: what the program left behind."""
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:  # state ppid pgrp session
            left.append(stat.split(")")[0] + ")")
    return left


def finish(child, expected_status):
    child.expect(pexpect.EOF)
    output = child.before
    child.close()
    check(child.exitstatus == expected_status,
          f"exit status {child.exitstatus} (signal {child.signalstatus}), "
          f"expected {expected_status}")
    # The root was the session's leader: nothing of the tree may outlive it. Actors die with their
    # parent (PR_SET_PDEATHSIG) within moments of its exit: wait for each to exit (its pidfd turns
    # readable; 5 s in all is a failure guard), then insist.
    deadline = time.monotonic() + 5
    for pid in session_processes(child.pid):
        wait_for_exit(pid, max(0.0, deadline - time.monotonic()))
    left = session_processes(child.pid)
    check(not left, f"processes left behind: {left}")
    return output


def ask_as_a_stranger(request):
    """Sends `request` to every debugger socket of the host (this test's root's included) from
    outside any tree: what each answers, which must be nothing at all."""
    answers = []
    with open("/proc/net/unix") as f:
        names = {line.split()[-1] for line in f if "@harrow-debugger-" in line}
    for name in names:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(GUARD)
            try:
                s.connect("\0" + name[1:])
                s.sendall(request)
                s.shutdown(socket.SHUT_WR)
                answers.append(s.recv(16))
            except ConnectionResetError:  # closed unread: refused without a word
                answers.append(b"")
            except TimeoutError:  # held on to, as if queued: no refusal
                answers.append(b"(held)")
            except OSError as e:  # gone meanwhile (another test's root that exited)
                print("(stranger:", name, e, ")")
    return names, answers


def test_crashes_take_turns():
    """Both leaves abort: one gets gdb on the terminal, the other waits for it; then its turn."""
    child = start("--mode=abort")
    child.expect(BANNER + r"received SIGABRT")
    first, first_pid = child.match.group(1), child.match.group(2)
    child.expect(GDB)
    child.sendline("bt")
    child.expect(GDB)
    check("patientAborts" in child.before, "the first backtrace does not name patientAborts")
    check("harrow debugger: actor" not in child.before,
          "the second leaf got the terminal while the first held it")
    # Ctrl-C on the terminal is gdb's while it runs: it must not cancel the tree.
    child.sendintr()
    child.expect(GDB)
    child.sendline("quit")
    child.expect(r"actor '" + re.escape(first) + r"' \(pid \d+\) released the terminal")
    child.expect(BANNER + r"received SIGABRT")
    second, second_pid = child.match.group(1), child.match.group(2)
    check(second != first and second_pid != first_pid, "the same leaf stopped twice")
    child.expect(GDB)
    # The first leaf has died now, so "mid" is cancelling this one: its grace period (0.75 s)
    # runs out while we are in the debugger, and the supervisor must not kill it meanwhile.
    child.sendline("shell sleep 2")
    child.expect(GDB)
    child.sendline("bt")
    child.expect(GDB)
    check("patientAborts" in child.before, "the second backtrace does not name patientAborts")
    child.sendline("quit")
    output = finish(child, 1)
    check("killed by signal 6 (Aborted)" in output, "the tree did not end with the leaf's SIGABRT")
    check("signal 9" not in output, "a leaf was killed while it was in the debugger")
    check("cancelling the actor tree" not in output, "Ctrl-C in gdb reached the tree")


def test_pause_resumes():
    """Both leaves call harrow::pause(): quitting gdb resumes each; the tree succeeds."""
    child = start("--mode=pause")
    names = []
    for turn in range(2):
        child.expect(BANNER + r"called harrow::pause\(\)")
        names.append(child.match.group(1))
        child.expect(GDB)
        child.sendline("bt")
        child.expect(GDB)
        check(re.search(r"harrow::pause.*\r?\n.*patientPauses", child.before) is not None,
              f"turn {turn}: the backtrace does not show patientPauses calling harrow::pause")
        if turn == 0:
            # A process outside the tree gets no word from the root: no gdb, no turn, no answer.
            sockets, answers = ask_as_a_stranger(b"debug intruder\nplease attach")
            check(len(sockets) > 0, "no debugger socket found in /proc/net/unix")
            check(all(a == b"" for a in answers), f"a stranger got answers: {answers}")
            sockets, answers = ask_as_a_stranger(b"wait\n")
            check(all(a == b"" for a in answers), f"a stranger's wait got answers: {answers}")
        child.sendline("quit")
    child.expect(r"tree done: \d+")
    finish(child, 0)
    check(sorted(names) == ["mid.0", "mid.1"], f"the leaves that stopped: {names}")
    for name in names:
        check(f"[{name}] resumed" in child.logfile_read.text, f"{name} did not resume")


def test_handler_error_post_mortem():
    """A leaf's handler raises: the root shows where, gdb attaches to the actor stopped in the
    handler itself (its frame and locals alive), the error then propagates."""
    child = start("--mode=error", "--leaves=1")
    child.expect(BANNER + r"a handler raised patient.Failed: the leaf failed on purpose")
    child.expect(GDB)
    check("patientRaises() at tests/spawn/debugger/debug_program.c++" in child.before,
          "the banner does not show the raising function")
    check("stopped in the handler" in child.before, "the banner does not say where it stopped")
    child.sendline("bt")
    child.expect(GDB)
    # The handler's coroutine, where the error left its body (the frame below the harrow ones).
    # gdb wraps a long frame's "at file:line" onto the next line (it does under ASan): match
    # across lines, never across frames.
    handler = re.search(r"#(\d+) [^#]*?run[^#]*? at tests/spawn/debugger/debug_program\.c\+\+:\d+",
                        child.before)
    check(handler is not None, "gdb's bt does not show the handler's frame")
    check("taskFailed" not in child.before, "the actor stopped after its handler had ended")
    if handler is not None:
        child.sendline(f"frame {handler.group(1)}")
        child.expect(GDB)
        check("debug_program.c++" in child.before, "`frame` does not show the handler's source")
        child.sendline("info locals")
        child.expect(GDB)
        check(re.search(r"leaves = 0", child.before) is not None,
              "`info locals` does not show the handler's local `leaves`")
    child.sendline("quit")
    output = finish(child, 1)
    check("patient.Failed from actor 'mid.0'" in output, "the leaf's error did not reach the root")


def test_kill_in_gdb_fails_a_pause():
    """gdb's `kill` ends a paused actor: its parent sees it die, and the tree fails."""
    child = start("--mode=pause", "--leaves=1")
    child.expect(BANNER + r"called harrow::pause\(\)")
    child.expect(GDB)
    child.sendline("kill")
    child.expect(GDB)
    child.sendline("quit")
    output = finish(child, 1)
    check("actor 'mid.0'" in output and "killed by signal 9" in output,
          "the killed leaf is not reported as killed")


def test_root_pauses():
    """The root calls harrow::pause(): gdb attaches to the root itself; quitting resumes it."""
    child = start("--mode=ok", "--pause-root")
    child.expect(r"harrow debugger: actor 'debug_program' \(the root, pid (\d+)\) stopped: "
                 r"called harrow::pause\(\)")
    check(int(child.match.group(1)) == child.pid, "the stopped root is not the program's process")
    child.expect(GDB)
    child.sendline("bt")
    child.expect(GDB)
    check(re.search(r"harrow::pause.*\r?\n.*rootPauses", child.before) is not None,
          "the backtrace does not show rootPauses calling harrow::pause")
    child.sendline("quit")
    child.expect("root resumed")
    child.expect(r"tree done: \d+")
    finish(child, 0)


def test_without_a_terminal():
    """A root whose stdin is no terminal prints what stopped and lets the actors carry on."""
    env = dict(os.environ)
    env.update({"HARROW_REGISTRY": "none"})
    run = subprocess.Popen([PROGRAM, "--harrow-debug", "--mode=pause"], env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output, _ = run.communicate(timeout=GUARD)
    print(output)
    check(run.returncode == 0, f"exit status {run.returncode} without a terminal, expected 0")
    check(output.count("the root has no terminal; the actor carries on") == 2,
          "the root did not say twice that it has no terminal")
    check("tree done:" in output, "the tree did not finish")
    check(not session_processes(run.pid), "processes left behind without a terminal")


for test in (test_crashes_take_turns, test_pause_resumes, test_handler_error_post_mortem,
             test_kill_in_gdb_fails_a_pause, test_root_pauses, test_without_a_terminal):
    print(f"\n=== {test.__name__}", flush=True)
    try:
        test()
    except (pexpect.TIMEOUT, pexpect.EOF, subprocess.TimeoutExpired) as e:
        check(False, f"{test.__name__}: {type(e).__name__} waiting for output")

print("\n" + ("FAILED: " + "; ".join(failures) if failures else "PASSED"))
sys.exit(1 if failures else 0)
