"""The grader's C++ part: lists the Catch2 (v2) test cases tagged [hwN] in needle_tests, runs
each in its own process under the time limit, and reads its result from Catch2's console
output.

Tags read: [points=K] gives the test K points (default 1; Catch2 v2 accepts '=' in a tag),
[hidden] shows its result to students only after the due date. Catch2 prints an exception's
what() without its type, so tests/cpp/main.cc translates needle::NotImplemented into
"NotImplemented: <what>" and a homework stub reads the same as in Python.
"""
import os
import re

from grade_common import NOT_IMPLEMENTED, TestResult, describe_exit, run_limited, trim

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
    return [run_test(binary, name, points.get(name, 1), name in hidden, root, timeout)
            for name in names]


def harness_failure(binary, why):
    return TestResult(name=os.path.basename(binary), kind="cpp", points=0, outcome="failed",
                      message=first_line_of(why), output=trim(why))


def first_line_of(text):
    return text.strip().splitlines()[0] if text.strip() else ""


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


def test_spec(name):
    """A Catch2 v2 test spec that matches exactly the test called `name`: a backslash escapes
    every character that a spec treats specially (',' '[' '*' '~' '"' '\\' ...)."""
    return re.sub(r"([^A-Za-z0-9 ])", r"\\\1", name)


def run_test(binary, name, points, hidden, root, timeout):
    done = run_limited([binary, test_spec(name), "--use-colour", "no"], timeout, cwd=root)
    output = without_banner(done.output)
    result = TestResult(name=name, kind="cpp", points=points, outcome="failed", hidden=hidden,
                        output=trim(output), duration=round(done.duration, 3))
    failures = failure_messages(output)
    if done.timed_out:
        result.outcome = "timeout"
        result.message = f"Timeout: the test took longer than its {timeout:g} s limit"
    elif done.returncode < 0:
        result.outcome = "crashed"
        fatal = [m for m in failures if m.startswith("SIG")]
        result.message = f"Crash: {fatal[0] if fatal else describe_exit(done.returncode)}"
    elif done.returncode == 0 and "No test cases matched" not in output:
        result.outcome, result.output = "passed", ""
    else:
        result.message = failures[0] if failures else first_line_of(output)
        result.not_implemented = any(NOT_IMPLEMENTED.match(m) for m in failures)
    return result


def without_banner(output):
    """Catch2's console output from the first test's header on (the banner names only the
    binary and Catch2's version)."""
    marker = "Run with -? for options"
    return output.split(marker, 1)[1].lstrip("\n") if marker in output else output


def failure_messages(output):
    """One line per failed assertion in Catch2 v2 console output, in order: the exception's
    message ("NotImplemented: hw0: compact"), the fatal signal, an explicit FAIL's message, or
    the failed expression with its expansion ("REQUIRE( a == b ) with expansion: 1 == 2")."""
    lines = output.splitlines()
    messages = []
    for i, line in enumerate(lines):
        if line.endswith(" FAILED:"):
            block = []
            for following in lines[i + 1:]:
                if not following.strip():
                    break
                block.append(following)
            messages.append(describe_failure(block))
    return [m for m in messages if m]


def describe_failure(block):
    """The message of one FAILED block: its lines up to the next blank line."""
    def after(heading):
        for j, line in enumerate(block[:-1]):
            if line.strip() == heading:
                return block[j + 1].strip()
        return None

    for heading in ("due to unexpected exception with message:",
                    "due to a fatal error condition:", "explicitly with message:"):
        message = after(heading)
        if message is not None:
            return message
    expression = block[0].strip() if block and block[0].startswith("  ") else ""
    expansion = after("with expansion:")
    if expression and expansion:
        return f"{expression} with expansion: {expansion}"
    return expression or (block[0].strip() if block else "")
