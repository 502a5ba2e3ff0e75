"""The grader's Python part: runs `pytest -m hwN -p pytest_grader` and turns the plugin's
JSON-lines log into results.

A test that kills the interpreter (segfault, os.abort) is the one that started and did not
finish: it is recorded as crashed, with the signal, and pytest runs again on the tests not
yet graded. A test stuck in C code, where the plugin's SIGALRM cannot interrupt it, is killed
by a watchdog here a few seconds after its time limit and recorded as a timeout.
"""
import json
import os
import re
import subprocess
import sys
import time

from grade_common import NOT_IMPLEMENTED, TestResult, describe_exit, kill_group, trim

WATCHDOG_GRACE = 5.0  # seconds past the time limit before a test that ignores SIGALRM is killed
IDLE_LIMIT = 300.0  # seconds pytest may go without reporting anything outside a test
POLL_INTERVAL = 0.2
CRASH_OUTPUT_TAIL = 4000  # characters of pytest's own output attached to a crashed test


def grade_python(hw, pytest_dir, root, tools_dir, timeout, workdir):
    """One TestResult per test of `pytest_dir` marked `hw`, in collection order, then one
    failed result per module that could not be collected."""
    grading = PytestGrading(hw, pytest_dir, root, tools_dir, timeout, workdir)
    grading.run()
    return grading.results()


class PytestGrading:
    def __init__(self, hw, pytest_dir, root, tools_dir, timeout, workdir):
        self.hw, self.pytest_dir, self.root = hw, pytest_dir, root
        self.tools_dir, self.timeout, self.workdir = tools_dir, timeout, workdir
        self.collected = {}  # node id -> {"points", "hidden"}, in collection order
        self.graded = {}  # node id -> TestResult
        self.collect_errors = {}  # node id -> TestResult
        self.timed_out = set()  # node ids whose time limit fired inside the test
        self.harness_failures = []  # pytest itself failed outside any test

    def run(self):
        attempt = 0
        while True:
            attempt += 1
            before = len(self.graded)
            unfinished, returncode, killed, output = self.attempt(attempt)
            if unfinished is not None:
                self.graded[unfinished] = self.unfinished_result(
                    unfinished, returncode, killed == "test", output)
                continue  # run again on the tests not yet graded
            if killed == "idle":
                self.harness_failures.append(self.pytest_failure(
                    returncode, output, "pytest reported nothing for "
                    f"{max(self.timeout, IDLE_LIMIT):g} s outside any test; the grader killed it"))
            elif len(self.graded) == before and returncode not in (0, 1, 5):
                self.harness_failures.append(self.pytest_failure(returncode, output))
            elif len(self.graded) < len(self.collected) and len(self.graded) > before:
                continue  # pytest stopped early without an unfinished test: try the rest
            return

    def attempt(self, number):
        """Runs pytest once on the tests not yet graded. Returns (node id of the test that
        started and did not finish or None, pytest's return code, why the watchdog killed it
        (None, "test" or "idle"), pytest's output)."""
        log = os.path.join(self.workdir, f"pytest-{number}.jsonl")
        exclude = os.path.join(self.workdir, f"exclude-{number}.txt")
        out_path = os.path.join(self.workdir, f"pytest-{number}.out")
        with open(exclude, "w", encoding="utf-8") as f:
            f.writelines(nodeid + "\n" for nodeid in self.graded)
        cmd = [sys.executable, "-m", "pytest", self.pytest_dir, "-m", self.hw,
               "-p", "pytest_grader", "--grader-log", log, "--grader-hw", self.hw,
               "--grader-timeout", str(self.timeout), "--grader-exclude", exclude,
               "--rootdir", self.pytest_dir, "-p", "no:cacheprovider",
               "--continue-on-collection-errors", "-q", "--tb=short",
               # a test still running at its limit gets its stack dumped, even from C code
               "-o", f"faulthandler_timeout={self.timeout:g}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.path.join(self.root, "python"), self.tools_dir,
                        env.get("PYTHONPATH")) if p)
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            killed = self.watch(proc, log)
        with open(out_path, encoding="utf-8", errors="replace") as f:
            output = f.read()
        current = None
        for event in read_events(log):
            current = self.apply(event, current)
        return current, proc.returncode, killed, output

    def watch(self, proc, log):
        """Waits for pytest, killing it when one test runs past its limit plus the grace, or
        when it goes quiet outside any test (a hang while collecting or finishing). Returns
        None, "test" or "idle": why it had to."""
        tail = EventTail(log)
        current, since = None, time.monotonic()
        idle_limit = max(self.timeout, IDLE_LIMIT) + WATCHDOG_GRACE
        while proc.poll() is None:
            for event in tail.new_events():
                since = time.monotonic()
                if event["event"] == "start":
                    current = event["nodeid"]
                elif event["event"] == "result":
                    current = None
            waited = time.monotonic() - since
            why = ("test" if current and waited > self.timeout + WATCHDOG_GRACE else
                   "idle" if not current and waited > idle_limit else None)
            if why:
                kill_group(proc)
                proc.wait()
                return why
            time.sleep(POLL_INTERVAL)
        return None

    def apply(self, event, current):
        """Records one event of the log; returns the test now running (None between tests)."""
        kind = event["event"]
        if kind == "collected":
            for test in event["tests"]:
                self.collected.setdefault(test["nodeid"], test)
        elif kind == "collect_error":
            self.collect_errors[event["nodeid"]] = collect_error_result(event)
        elif kind == "start":
            return event["nodeid"]
        elif kind == "timeout":
            self.timed_out.add(event["nodeid"])
        elif kind == "result":
            self.graded[event["nodeid"]] = self.finished_result(event)
            return None
        return current

    def info(self, nodeid):
        return self.collected.get(nodeid, {"points": 1, "hidden": False})

    def finished_result(self, event):
        info = self.info(event["nodeid"])
        outcome = event["outcome"]
        output = event["output"] if outcome in ("failed", "timeout") else ""
        not_implemented = outcome == "failed" and (
            event["not_implemented"] or bool(NOT_IMPLEMENTED.search(output)))
        return TestResult(name=event["nodeid"], kind="python", points=info["points"],
                          outcome=outcome, message=event["message"], output=trim(output),
                          hidden=info["hidden"], not_implemented=not_implemented,
                          duration=event["duration"], fraction=event.get("fraction", 1.0))

    def unfinished_result(self, nodeid, returncode, hung, output):
        """The test that started and never reported: stuck past its limit, or a crash. Its
        output is faulthandler's stack dump from pytest's output."""
        info = self.info(nodeid)
        result = TestResult(name=nodeid, kind="python", points=info["points"],
                            outcome="crashed", hidden=info["hidden"])
        if hung or nodeid in self.timed_out:
            result.outcome, result.duration = "timeout", self.timeout
            result.message = f"Timeout: the test took longer than its {self.timeout:g} s limit"
            if hung:
                result.message += " and did not return to Python; the grader killed it"
            result.output = trim(last_section(output, "Timeout ("))
        else:
            result.message = (f"Crash: the Python process {describe_exit(returncode)} "
                              f"during this test")
            result.output = trim(last_section(output, "Fatal Python error"))
        return result

    def pytest_failure(self, returncode, output, why=None):
        """pytest failed outside any test (it could not start, crashed while collecting...)."""
        relative = os.path.relpath(self.pytest_dir, self.root)
        if relative.startswith(".."):
            relative = self.pytest_dir
        errors = [line for line in output.splitlines() if line.startswith(("ERROR", "E "))]
        message = why or (f"pytest {describe_exit(returncode)}: "
                          f"{errors[0] if errors else 'outside any test'}")
        return TestResult(name=f"pytest {relative}", kind="python", points=0, outcome="failed",
                          message=message, output=trim(output))

    def results(self):
        ordered = [self.graded.get(n) or self.not_run(n) for n in self.collected]
        ordered += [r for n, r in self.graded.items() if n not in self.collected]
        return ordered + list(self.collect_errors.values()) + self.harness_failures

    def not_run(self, nodeid):
        info = self.info(nodeid)
        return TestResult(name=nodeid, kind="python", points=info["points"], outcome="failed",
                          hidden=info["hidden"],
                          message="not run: pytest stopped before reaching this test")


def last_section(output, heading):
    """faulthandler's last report in pytest's output (it starts with heading) without the
    frames of pytest itself; the output's tail when there is none."""
    at = output.rfind(heading)
    if at < 0:
        return output[-CRASH_OUTPUT_TAIL:]
    lines = output[at:].splitlines()
    kept = [line for line in lines if not re.search(r"/(_pytest|pluggy)/", line)]
    if len(kept) < len(lines):
        kept.append(f"  ({len(lines) - len(kept)} frames of pytest left out)")
    return "\n".join(kept)


def collect_error_result(event):
    lines = event["output"].splitlines()
    raised = [line[1:].strip() for line in lines if line.startswith("E ")]
    message = raised[-1] if raised else (lines[0] if lines else "collection failed")
    return TestResult(name=f"{event['nodeid']} (collection)", kind="python", points=0,
                      outcome="failed", message=f"collection error: {message}",
                      output=trim(event["output"]),
                      not_implemented=bool(NOT_IMPLEMENTED.search(event["output"])))


def read_events(path):
    """Every complete event of a log; a line cut short by a crash is dropped."""
    return EventTail(path).new_events()


class EventTail:
    """Reads the complete lines appended to a JSON-lines log since the last call."""

    def __init__(self, path):
        self.path, self.offset, self.partial = path, 0, b""

    def new_events(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events
