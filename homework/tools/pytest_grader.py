"""pytest plugin of the homework grader: records each test's outcome as it goes and enforces
the per-test time limit.

Loaded by `homework/tools/grade` as `-p pytest_grader`; inert unless --grader-log is given.
It appends one JSON object per line to the log and flushes after each, so when a test kills
the interpreter (segfault, os.abort) the grader still knows which test started and did not
finish, and which ones are done:

  {"event": "collected", "tests": [{"nodeid", "points", "hidden"}, ...]}
  {"event": "collect_error", "nodeid", "output"}
  {"event": "start", "nodeid"}
  {"event": "timeout", "nodeid"}              the time limit fired inside this test
  {"event": "result", "nodeid", "outcome", "duration", "message", "output", "not_implemented",
   "fraction"}
  {"event": "finish", "exitstatus"}

outcome is passed, failed, skipped or timeout. Points come from the homework marker's kwargs,
`@pytest.mark.hw1(points=2)` (default 1); `@pytest.mark.hidden` marks a test whose result
students see only after the due date. A test graded by speed earns part of its points by
recording `record_property("score_fraction", f)` (0 <= f <= 1) before it passes; the message
then says so.
"""
import contextlib
import json
import signal
import time

import pytest

from grade_common import first_line

OUTPUT_LIMIT = 20000  # characters of failure text kept per test; the grader trims further


class GraderTimeout(BaseException):
    """Raised in the test when its time is up. A BaseException, so `except Exception` in the
    code under test cannot swallow it."""


def pytest_addoption(parser):
    group = parser.getgroup("grader", "homework grader")
    group.addoption("--grader-log", help="JSON-lines file that receives every test's outcome")
    group.addoption("--grader-hw", help="the assignment graded (hwN): its marker carries points")
    group.addoption("--grader-timeout", type=float, default=300.0,
                    help="seconds each test may take, setup and teardown included")
    group.addoption("--grader-exclude",
                    help="file of node ids (one a line) to leave out: tests already graded")


def pytest_configure(config):
    if not config.getoption("grader_log"):
        return
    config.addinivalue_line("markers", "hidden: result shown to students after the due date")
    hw = config.getoption("grader_hw")
    if hw:
        config.addinivalue_line("markers", f"{hw}(points=1): graded by homework {hw}")
    config.pluginmanager.register(Recorder(config), "grader-recorder")


def marker_points(item, hw):
    """The closest `hw` marker that names points, else 1."""
    for marker in item.iter_markers(name=hw) if hw else ():
        if "points" in marker.kwargs:
            points = marker.kwargs["points"]
            if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.{hw}(points=...) must be a number >= 0, "
                    f"got {points!r}")
            return points
    return 1


def exception_chain(excinfo):
    """The raised exception followed by its causes and contexts."""
    seen, exc = [], excinfo.value
    while exc is not None and all(exc is not s for s in seen):
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


class Recorder:
    def __init__(self, config):
        self.hw = config.getoption("grader_hw")
        self.timeout = config.getoption("grader_timeout")
        self.log = open(config.getoption("grader_log"), "a", encoding="utf-8")
        self.exclude = set()
        exclude_file = config.getoption("grader_exclude")
        if exclude_file:
            with open(exclude_file, encoding="utf-8") as f:
                self.exclude = {line.rstrip("\n") for line in f if line.strip()}
        self.current = None  # node id of the running test
        self.deadline = 0.0  # time.monotonic() when its time is up
        self.started = 0.0
        self.reports = []  # the running test's reports, one per phase
        self.not_implemented = False
        self.timed_out = False

    def write(self, **event):
        self.log.write(json.dumps(event) + "\n")
        self.log.flush()

    # --- collection ---

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        if not self.exclude:
            return
        kept = [item for item in items if item.nodeid not in self.exclude]
        dropped = [item for item in items if item.nodeid in self.exclude]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    def pytest_collection_finish(self, session):
        tests = [{"nodeid": item.nodeid, "points": marker_points(item, self.hw),
                  "hidden": item.get_closest_marker("hidden") is not None}
                 for item in session.items]
        self.write(event="collected", tests=tests)

    def pytest_collectreport(self, report):
        if report.failed:
            self.write(event="collect_error", nodeid=report.nodeid,
                       output=str(report.longreprtext)[-OUTPUT_LIMIT:])

    # --- one test ---

    def pytest_runtest_logstart(self, nodeid, location):
        self.current, self.reports = nodeid, []
        self.not_implemented = self.timed_out = False
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout
        self.write(event="start", nodeid=nodeid)

    def on_alarm(self, signum, frame):
        __tracebackhide__ = True  # the failure shows the test's frames, not the grader's
        self.timed_out = True
        self.write(event="timeout", nodeid=self.current)
        raise GraderTimeout(f"the test took longer than its {self.timeout:g} s limit")

    @contextlib.contextmanager
    def phase_alarm(self):
        """SIGALRM at the test's deadline while one phase (setup, call, teardown) runs, so
        pytest's own code between phases never sees it. A phase that starts late gets 1 s."""
        previous = signal.signal(signal.SIGALRM, self.on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(self.deadline - time.monotonic(), 1.0))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        with self.phase_alarm():
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        with self.phase_alarm():
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item):
        with self.phase_alarm():
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        if call.excinfo is not None and any(
                isinstance(e, NotImplementedError) for e in exception_chain(call.excinfo)):
            self.not_implemented = True
        report = outcome.get_result()
        if call.excinfo is not None and report.failed:
            report.grader_message = first_line(call.excinfo.exconly())

    def pytest_runtest_logreport(self, report):
        self.reports.append(report)

    def pytest_runtest_logfinish(self, nodeid, location):
        outcome, message, output = summarize(self.reports)
        if self.timed_out:
            outcome = "timeout"
            message = f"Timeout: the test took longer than its {self.timeout:g} s limit"
        fraction = score_fraction(self.reports)
        if outcome == "passed" and fraction < 1.0 and not message:
            message = f"partial credit: {fraction:.0%} of the points (graded by speed)"
        self.write(event="result", nodeid=nodeid, outcome=outcome,
                   duration=round(time.monotonic() - self.started, 3), message=message,
                   output=output[-OUTPUT_LIMIT:],
                   not_implemented=self.not_implemented and outcome == "failed",
                   fraction=fraction)
        self.current = None

    def pytest_sessionfinish(self, session, exitstatus):
        self.write(event="finish", exitstatus=int(exitstatus))
        self.log.close()


def score_fraction(reports):
    """The test's recorded ``score_fraction`` clipped to [0, 1]; 1 when it recorded none."""
    for report in reports:
        for key, value in getattr(report, "user_properties", ()):
            if key == "score_fraction":
                try:
                    return min(max(float(value), 0.0), 1.0)
                except (TypeError, ValueError):
                    return 0.0
    return 1.0


def summarize(reports):
    """(outcome, first line, text) of a test from its setup/call/teardown reports."""
    failed = [r for r in reports if r.failed]
    if failed:
        first = failed[0]
        message = getattr(first, "grader_message", "") or first_line(first.longreprtext)
        if first.when != "call":
            message = f"error in {first.when}: {message}"
        return "failed", message, failure_text(failed)
    skipped = [r for r in reports if r.skipped]
    if skipped:
        return "skipped", skip_reason(skipped[0]), ""
    return "passed", "", ""


def skip_reason(report):
    if getattr(report, "wasxfail", None) is not None:
        return f"expected to fail: {report.wasxfail}".rstrip(": ")
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def failure_text(failed):
    """Each failed phase's traceback, then what the test printed (the last report holds the
    captured output of every phase so far)."""
    parts = []
    for report in failed:
        if report.when != "call":
            parts.append(f"--- error in {report.when} ---")
        parts.append(str(report.longreprtext))
    for title, content in failed[-1].sections:
        if content.strip():
            parts.append(f"--- {title} ---\n{content.rstrip()}")
    return "\n".join(parts)

