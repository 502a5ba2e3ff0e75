"""The grader's build step: configure once (when BUILD/build.ninja is missing), then build
incrementally; a failure becomes the one failed test "build" whose output starts at the
first error line."""
import os
import re
import sys

from grade_common import TestResult, describe_exit, run_limited, trim

# Lines that report a build error: compiler and linker diagnostics, CMake and ninja errors.
ERROR_LINE = re.compile(r": (fatal )?error:|^CMake Error|undefined reference to|^ninja: error"
                        r"|^collect2: error|^nvcc fatal")
SHOWN_ERROR_LINES = 25


def build(root, build_dir, timeout):
    """Configures and builds; returns None on success, else the failed "build" TestResult."""
    steps = []
    if not os.path.exists(os.path.join(build_dir, "build.ninja")):
        steps.append(["cmake", "-S", root, "-B", build_dir, "-G", "Ninja",
                      f"-DPython3_EXECUTABLE={sys.executable}"])
    steps.append(["cmake", "--build", build_dir])
    log = []
    for cmd in steps:
        print("$", " ".join(cmd), flush=True)
        done = run_limited(cmd, timeout, cwd=root)
        log.append(f"$ {' '.join(cmd)}\n{done.output}")
        if done.timed_out or done.returncode != 0:
            why = f"timed out after {timeout:g} s" if done.timed_out else describe_exit(
                done.returncode)
            return build_failure("\n".join(log), f"{cmd[1]} {why}", done.duration)
        print(f"  ok ({done.duration:.0f} s)", flush=True)
    return None


def build_failure(log, why, duration):
    lines = log.splitlines()
    errors = [i for i, line in enumerate(lines) if ERROR_LINE.search(line)]
    print(f"BUILD FAILED: {why}")
    for i in errors[:SHOWN_ERROR_LINES]:
        print("  " + lines[i])
    if len(errors) > SHOWN_ERROR_LINES:
        print(f"  ... and {len(errors) - SHOWN_ERROR_LINES} more error lines")
    start = errors[0] if errors else max(len(lines) - 60, 0)
    message = lines[errors[0]].strip() if errors else f"the build {why}"
    output = trim("\n".join(lines[start:]) + f"\n\nThe build {why}.")
    return TestResult(name="build", kind="build", points=0, outcome="failed", message=message,
                      output=output, duration=duration)
