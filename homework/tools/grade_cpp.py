"""The grader's C++ part: lists the Catch2 (v2) test cases tagged [hwN] in needle_tests, runs
each in its own process under the time limit, and reads its result from Catch2's XML report
(which, unlike the console reporter, never wraps a message).

Tags read: [points=K] gives the test K points (default 1; Catch2 v2 accepts '=' in a tag),
[hidden] shows its result to students only after the due date. Catch2 prints an exception's
what() without its type, so tests/cpp/main.cc translates needle::NotImplemented into
"NotImplemented: <what>" and a homework stub reads the same as in Python.
"""
import dataclasses
import os
import re
import tempfile
from xml.etree import ElementTree

from grade_common import NOT_IMPLEMENTED, TestResult, describe_exit, first_line, run_limited, trim

POINTS_TAG = re.compile(r"\[points=(\d+(?:\.\d+)?)\]", re.IGNORECASE)
LIST_TIMEOUT = 60


class ListingFailed(Exception):
    pass


def grade_cpp(hw, binary, root, timeout):
    """One TestResult per [hw] test case of `binary`, in declaration order."""
    if not os.path.isfile(binary):
        return [harness_failure(binary, f"the C++ test binary {binary} does not exist")]
    try:
        names = list_tests(binary, f"[{hw}]", root)
        points = points_by_test(binary, hw, root)
        hidden = set(list_tests(binary, f"[{hw}][hidden]", root))
    except ListingFailed as e:
        return [harness_failure(binary, str(e))]
    with tempfile.TemporaryDirectory(prefix="grade-cpp-") as workdir:
        return [run_test(binary, name, points.get(name, 1), name in hidden, root, timeout,
                         workdir) for name in names]


def harness_failure(binary, why):
    return TestResult(name=os.path.basename(binary), kind="cpp", points=0, outcome="failed",
                      message=first_line(why), output=trim(why))


def catch2(binary, args, root, timeout=LIST_TIMEOUT):
    """Output of a listing command. Catch2 v2 exits with the number of tests listed, so only a
    signal or a timeout is a failure here."""
    done = run_limited([binary, *args], timeout, cwd=root)
    if done.timed_out or done.returncode < 0:
        why = "timed out" if done.timed_out else describe_exit(done.returncode)
        raise ListingFailed(f"`{os.path.basename(binary)} {' '.join(args)}` {why}:\n"
                            f"{done.output}")
    return done.output


def list_tests(binary, spec, root):
    """Names of the test cases matching a Catch2 test spec, e.g. "[hw0]" or "[hw0][hidden]"."""
    names = []
    for line in catch2(binary, ["--list-test-names-only", spec], root).splitlines():
        if line.startswith('"#') and line.endswith('"'):  # Catch2 quotes names starting with #
            line = line[1:-1]
        if line.strip():
            names.append(line)
    return names


def points_by_test(binary, hw, root):
    """{test name: K} for the [hw] tests that carry a [points=K] tag."""
    tags = set(POINTS_TAG.findall(catch2(binary, ["--list-tags", f"[{hw}]"], root)))
    points = {}
    for value in sorted(tags, key=float):
        for name in list_tests(binary, f"[{hw}][points={value}]", root):
            if name in points:
                print(f"warning: C++ test {name!r} has several [points=...] tags; "
                      f"it counts {value}")
            points[name] = int(value) if float(value).is_integer() else float(value)
    return points


def exact_spec(name):
    """A Catch2 v2 test spec that matches exactly the test called `name`: a backslash escapes
    every character that a spec treats specially (',' '[' '*' '~' '"' '\\' ...)."""
    return re.sub(r"([^A-Za-z0-9 ])", r"\\\1", name)


def run_test(binary, name, points, hidden, root, timeout, workdir):
    """Runs one test case with Catch2's XML reporter writing to a file (messages unwrapped,
    apart from what the test itself prints)."""
    report = os.path.join(workdir, "catch2.xml")
    if os.path.exists(report):
        os.remove(report)
    done = run_limited([binary, exact_spec(name), "-r", "xml", "-o", report], timeout, cwd=root)
    failures, succeeded, printed, skipped = read_report(report)
    result = TestResult(name=name, kind="cpp", points=points, outcome="failed", hidden=hidden,
                        duration=round(done.duration, 3))
    if done.timed_out:
        result.outcome = "timeout"
        result.message = f"Timeout: the test took longer than its {timeout:g} s limit"
    elif done.returncode < 0:
        result.outcome = "crashed"
        fatal = [f.message for f in failures if f.kind == "fatal"]
        result.message = f"Crash: {fatal[0] if fatal else describe_exit(done.returncode)}"
    elif done.returncode == 0 and succeeded and skipped:
        # Catch2 v2 has no skip: a test that cannot run here (a CUDA case without a GPU) says
        # WARN("skipping ...") and checks nothing, so it counts as skipped, not passed.
        result.outcome = "skipped"
        result.message = skipped[0]
        return result
    elif done.returncode == 0 and succeeded:
        result.outcome = "passed"
        return result
    else:
        result.message = (failures[0].message if failures else
                          first_line(done.output) or f"needle_tests "
                                                        f"{describe_exit(done.returncode)}")
        result.not_implemented = any(NOT_IMPLEMENTED.match(f.message) for f in failures)
    parts = [f.render() for f in failures]
    printed = "\n".join(part for part in (printed, done.output.strip()) if part)
    if printed:
        parts.append(f"--- what the test printed ---\n{printed}")
    result.output = trim("\n".join(parts))
    return result


@dataclasses.dataclass
class Failure:
    """One failed assertion of Catch2's XML report."""
    kind: str  # "expression", "exception", "explicit" or "fatal"
    where: str  # file:line
    message: str  # the line shown in the score table
    expression: str = ""  # e.g. "REQUIRE( a == b )"
    expansion: str = ""
    info: tuple = ()  # the INFO/CAPTURE messages in scope
    sections: tuple = ()

    def render(self):
        if self.expression:
            lines = [f"{self.where}: {self.expression}"]
            if self.kind == "exception":
                lines.append(f"  threw: {self.message}")
            elif self.expansion:
                lines.append(f"  with expansion: {self.expansion}")
        else:
            label = {"exception": "threw", "fatal": "fatal error", "explicit": "failed"}
            lines = [f"{self.where}: {label[self.kind]}: {self.message}"]
        if self.sections:
            lines.append(f"  in section: {' / '.join(self.sections)}")
        lines += [f"  with info: {message}" for message in self.info]
        return "\n".join(lines)


def read_report(path):
    """(failures, whether the test case succeeded, what it wrote to std::cout and std::cerr,
    which Catch2 captures into the report, and its "skipping ..." warnings when it checked
    nothing else) from a Catch2 v2 XML report. A report cut short by
    a crash is read up to where it stops."""
    parser = ElementTree.XMLPullParser(events=("start", "end"))
    try:
        with open(path, "rb") as f:
            parser.feed(f.read())
    except (OSError, ElementTree.ParseError):
        pass
    failures, info, sections, succeeded, stack, printed = [], [], [], False, [], []
    skips, checked = [], False
    try:
        for event, element in parser.read_events():
            if event == "start":
                stack.append(element.tag)
                if element.tag == "Section":
                    sections.append(element.get("name", ""))
                continue
            stack.pop()
            parent = stack[-1] if stack else ""
            text = (element.text or "").strip()
            if element.tag == "Section":
                sections.pop()
            elif element.tag == "Info":
                info.append(text)
            elif element.tag == "Warning" and text.startswith("skipping"):
                skips.append(text)
            elif element.tag == "OverallResults" and parent == "Group":
                checked = int(element.get("successes", 0)) > 0
            elif element.tag == "OverallResult" and parent == "TestCase":
                succeeded = element.get("success") == "true"
            elif element.tag in ("StdOut", "StdErr") and parent == "OverallResult":
                printed.append(text)
            elif is_failure(element, parent):
                failures.append(failure_of(element, text, tuple(info), tuple(sections)))
                info = []
    except ElementTree.ParseError:
        pass  # the report was cut short: keep what came before
    return failures, succeeded, "\n".join(printed), [] if checked else skips


def is_failure(element, parent):
    """A failed assertion, an explicit FAIL, a fatal signal, or an exception that escaped the
    test case (one thrown inside an assertion belongs to its Expression)."""
    if element.tag == "Expression":
        return element.get("success") != "true"
    if element.tag == "Exception":
        return parent != "Expression"
    return element.tag in ("Failure", "FatalErrorCondition")


def failure_of(element, text, info, sections):
    where = f"{source_path(element.get('filename', '?'))}:{element.get('line', '?')}"
    if element.tag == "FatalErrorCondition":
        return Failure("fatal", where, text, info=info, sections=sections)
    if element.tag == "Failure":
        return Failure("explicit", where, text, info=info, sections=sections)
    if element.tag == "Exception":
        return Failure("exception", where, text, info=info, sections=sections)
    original = (element.findtext("Original") or "").strip()
    expanded = (element.findtext("Expanded") or "").strip()
    macro = element.get("type")
    expression = f"{macro}( {original} )" if macro else original
    thrown = element.find("Exception")
    if thrown is not None:
        return Failure("exception", where, (thrown.text or "").strip(), expression=expression,
                       info=info, sections=sections)
    expansion = expanded if expanded != original else ""
    message = f"{expression} with expansion: {expansion}" if expansion else expression
    return Failure("expression", where, message, expression=expression, expansion=expansion,
                   info=info, sections=sections)


def source_path(filename):
    """A source file as the repository names it: the compiler saw it relative to the build
    folder ("../tests/cpp/test_tensor.cc") or absolute."""
    return re.sub(r"^(\.\./)+", "", filename)
