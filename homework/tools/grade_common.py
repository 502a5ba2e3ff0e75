"""What every part of the homework grader shares: one test's result, output trimming, and
running a child process under a time limit (the whole process group is killed on timeout)."""
import dataclasses
import os
import re
import signal
import subprocess
import time

OUTCOMES = ("passed", "failed", "skipped", "timeout", "crashed")
OUTPUT_LIMIT = 8000  # characters of failure text kept per test in results.json

# A homework stub's message as both languages print it: Python's NotImplementedError and
# the C++ needle::NotImplemented (tests/cpp/main.cc's translator prefixes its type name).
NOT_IMPLEMENTED = re.compile(r"\bNotImplemented(Error)?: hw\d+\b")


@dataclasses.dataclass
class TestResult:
    name: str
    kind: str  # "cpp", "python" or "build"
    points: float
    outcome: str  # one of OUTCOMES
    message: str = ""  # first line of the failure, or the reason of a skip
    output: str = ""  # the failure text
    hidden: bool = False
    not_implemented: bool = False
    duration: float = 0.0
    fraction: float = 1.0  # of the points a passed test earns: a speed-graded test may earn less

    def __post_init__(self):
        assert self.outcome in OUTCOMES, self.outcome
        assert 0.0 <= self.fraction <= 1.0, self.fraction

    @property
    def max_score(self):
        return 0 if self.outcome == "skipped" else self.points

    @property
    def score(self):
        return self.points * self.fraction if self.outcome == "passed" else 0


def trim(text, limit=OUTPUT_LIMIT):
    """text cut to about `limit` characters: its start and its end, which hold the first
    failure and the final error, with a note of what was left out between them."""
    text = text.rstrip()
    if len(text) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    cut = len(text) - head - tail
    return f"{text[:head]}\n... [{cut} characters cut] ...\n{text[-tail:]}"


def first_line(text):
    """The first non-blank line of text (any object: pytest hands over reprs), stripped."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def describe_exit(returncode):
    """'killed by SIGSEGV' for a negative return code, else 'exited with status N'."""
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclasses.dataclass
class Finished:
    returncode: int | None  # None when it was killed for running past its time
    output: str
    duration: float

    @property
    def timed_out(self):
        return self.returncode is None


def run_limited(cmd, timeout, cwd=None, env=None):
    """Runs cmd with stdout and stderr merged, killing its whole process group once it runs
    longer than `timeout` seconds (children it started included). Never raises on failure:
    a missing program is a returncode of 127 with the error as output."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as e:
        return Finished(127, f"cannot run {cmd[0]}: {e}", 0.0)
    try:
        out, _ = proc.communicate(timeout=timeout)
        returncode = proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired as e:  # a child left the group and holds the pipe
            out = e.output or b""
        returncode = None
    return Finished(returncode, out.decode("utf-8", "replace"), time.monotonic() - started)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
