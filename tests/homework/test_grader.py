"""The homework grader, for real: homework/tools/grade on tiny fixture test files (pytest) and a
fixture Catch2 binary linked with tests/cpp/main.cc, on the reference build, on a tree that
does not build; run_autograder on fake /autograder trees; package's zip. The slow tests grade
the packaged hw1 end to end on a full build (ccache reuses the reference's objects)."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "homework" / "tools"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SCRATCH = REPO / "build" / "homework-tmp"  # under the repo, so ccache's relative paths match


def grade(*args, cwd=REPO):
    """Runs grade; returns (its stdout, the results.json it wrote)."""
    results = Path(args[args.index("--results") + 1])
    done = subprocess.run([sys.executable, str(TOOLS / "grade"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(results.read_text())


def by_name(results):
    return {t["name"]: t for t in results["tests"]}


def outcome(test):
    return test["extra_data"]["outcome"]


def check_gradescope_shape(results):
    """What Gradescope reads: a numeric score and time, the summary, well-formed tests."""
    assert isinstance(results["score"], (int, float))
    assert isinstance(results["execution_time"], (int, float))
    assert isinstance(results["output"], str)
    for t in results["tests"]:
        assert set(t) >= {"name", "score", "max_score", "status", "output", "visibility",
                          "extra_data"}
        assert t["status"] in ("passed", "failed")
        assert t["visibility"] in ("visible", "after_due_date")
        assert 0 <= t["score"] <= t["max_score"] or t["max_score"] == 0
    assert results["score"] == sum(t["score"] for t in results["tests"])


# --- Python tests through the pytest_grader plugin ---

@pytest.fixture(scope="module")
def python_graded(tmp_path_factory):
    tests = tmp_path_factory.mktemp("pytests")
    shutil.copy(FIXTURES / "graded_tests.py", tests / "test_graded.py")
    shutil.copy(FIXTURES / "broken_import.py", tests / "test_broken_import.py")
    out = tests / "out" / "results.json"
    stdout, results = grade("hw9", "--no-build", "--only", "python", "--pytest-dir", tests,
                            "--timeout", "1", "--results", out)
    return stdout, results


def test_python_results_have_gradescope_shape(python_graded):
    stdout, results = python_graded
    check_gradescope_shape(results)
    assert results["output"] == "hw9: 6.5/13 points (5 passed, 6 failed, 1 skipped)"
    assert stdout.splitlines()[-2] == results["output"]


def test_python_points_come_from_the_marker(python_graded):
    tests = by_name(python_graded[1])
    assert tests["test_graded.py::test_three_points"]["max_score"] == 3
    assert tests["test_graded.py::test_three_points"]["score"] == 3
    assert tests["test_graded.py::test_passes"]["max_score"] == 1
    assert "test_graded.py::test_of_another_assignment" not in tests


def test_python_speed_graded_test_earns_its_recorded_fraction(python_graded):
    stdout, results = python_graded
    test = by_name(results)["test_graded.py::test_graded_by_speed"]
    assert (test["score"], test["max_score"], test["status"]) == (0.5, 2, "passed")
    assert "partial credit: 25% of the points (graded by speed)" in test["output"]
    assert "partial credit: 25%" in stdout


def test_python_failures_name_the_exception(python_graded):
    tests = by_name(python_graded[1])
    failed = tests["test_graded.py::test_fails"]
    assert (failed["status"], failed["score"]) == ("failed", 0)
    assert failed["output"].startswith("AssertionError: assert [1, 2] == [1, 3]")
    assert not failed["extra_data"]["not_implemented"]
    setup = tests["test_graded.py::test_setup_error"]
    assert setup["output"].startswith("error in setup: RuntimeError: the fixture broke")


def test_python_not_implemented_is_recognized(python_graded):
    stub = by_name(python_graded[1])["test_graded.py::test_not_implemented"]
    assert outcome(stub) == "failed"
    assert stub["extra_data"]["not_implemented"]
    assert stub["output"].startswith("NotImplementedError: hw9: fn")


def test_python_timeout(python_graded):
    slow = by_name(python_graded[1])["test_graded.py::test_sleeps_past_the_limit"]
    assert (outcome(slow), slow["status"], slow["score"]) == ("timeout", "failed", 0)
    assert slow["output"].startswith("Timeout: the test took longer than its 1 s limit")


def test_python_crash_is_recorded_and_the_rest_still_graded(python_graded):
    stdout, results = python_graded
    tests = by_name(results)
    crash = tests["test_graded.py::test_aborts"]
    assert (outcome(crash), crash["status"], crash["max_score"]) == ("crashed", "failed", 1)
    assert "SIGABRT" in crash["output"].splitlines()[0]
    assert "Fatal Python error: Aborted" in crash["output"]
    after = tests["test_graded.py::test_after_the_abort"]
    assert (outcome(after), after["score"]) == ("passed", 1)
    assert "CRASH" in stdout


def test_python_skipped_counts_nothing(python_graded):
    skipped = by_name(python_graded[1])["test_graded.py::test_skipped"]
    assert outcome(skipped) == "skipped"
    assert (skipped["score"], skipped["max_score"]) == (0, 0)
    assert "no CUDA device" in skipped["output"]


def test_python_hidden_is_shown_after_the_due_date(python_graded):
    tests = by_name(python_graded[1])
    assert tests["test_graded.py::test_hidden"]["visibility"] == "after_due_date"
    assert tests["test_graded.py::test_passes"]["visibility"] == "visible"


def test_python_collection_error_is_a_failed_entry(python_graded):
    broken = by_name(python_graded[1])["test_broken_import.py (collection)"]
    assert broken["status"] == "failed"
    assert "No module named 'a_module_that_does_not_exist'" in broken["output"]


def test_python_stuck_test_is_killed_by_the_watchdog(tmp_path):
    shutil.copy(FIXTURES / "stuck_tests.py", tmp_path / "test_stuck.py")
    _, results = grade("hw9", "--no-build", "--only", "python", "--pytest-dir", tmp_path,
                       "--timeout", "1", "--results", tmp_path / "results.json")
    tests = by_name(results)
    stuck = tests["test_stuck.py::test_stuck_where_the_alarm_cannot_reach"]
    assert outcome(stuck) == "timeout"
    assert "the grader killed it" in stuck["output"]
    assert "test_stuck.py\", line" in stuck["output"]  # faulthandler's stack names the line
    assert outcome(tests["test_stuck.py::test_after_the_stuck_one"]) == "passed"


# --- C++ tests ---

def compile_fixture_binary():
    """build/homework-tmp/catch2-fixture/needle_tests: tests/cpp/main.cc (the Catch2 main and
    its NotImplemented translator) with fixtures/graded_cases.cc; rebuilt when a source is
    newer (ccache makes a rebuild of unchanged sources cheap)."""
    out = SCRATCH / "catch2-fixture"
    binary = out / "needle_tests"
    sources = {"main.o": REPO / "tests" / "cpp" / "main.cc",
               "cases.o": FIXTURES / "graded_cases.cc"}
    inputs = [*sources.values(), REPO / "needle" / "error.h"]
    if binary.exists() and all(binary.stat().st_mtime > p.stat().st_mtime for p in inputs):
        return binary
    out.mkdir(parents=True, exist_ok=True)
    compiler = ["ccache", "g++"] if shutil.which("ccache") else ["g++"]
    for obj, source in sources.items():
        subprocess.run([*compiler, "-std=c++17", "-O0", f"-I{REPO}", "-c", str(source), "-o",
                        str(out / obj)], check=True, env=dict(os.environ, CCACHE_BASEDIR=str(REPO)))
    subprocess.run(["g++", *(str(out / obj) for obj in sources), "-o", str(binary)], check=True)
    return binary


@pytest.fixture(scope="module")
def cpp_graded(tmp_path_factory):
    binary = compile_fixture_binary()
    out = tmp_path_factory.mktemp("cpp") / "results.json"
    return grade("hw9", "--no-build", "--only", "cpp", "--build-dir", binary.parent,
                 "--timeout", "2", "--results", out)


def test_cpp_results_have_gradescope_shape(cpp_graded):
    stdout, results = cpp_graded
    check_gradescope_shape(results)
    assert results["output"] == "hw9: 6/12 points (4 passed, 6 failed, 1 skipped)"
    assert all(t["extra_data"]["kind"] == "cpp" for t in results["tests"])
    assert "of another assignment" not in by_name(results)


def test_cpp_points_tag_and_a_name_that_needs_escaping(cpp_graded):
    tests = by_name(cpp_graded[1])
    named = tests["three points: a name with a comma, [brackets], *stars* and \\"]
    assert (outcome(named), named["score"], named["max_score"]) == ("passed", 3, 3)
    assert tests["passes"]["max_score"] == 1


def test_cpp_skip_is_a_skipping_warning_with_nothing_checked(cpp_graded):
    tests = by_name(cpp_graded[1])
    skipped = tests["skips without a device"]
    assert (outcome(skipped), skipped["max_score"]) == ("skipped", 0)
    assert "skipping cuda: no CUDA device" in skipped["output"]
    assert outcome(tests["warns but checks"]) == "passed"


def test_cpp_hidden_tag(cpp_graded):
    tests = by_name(cpp_graded[1])
    assert tests["hidden"]["visibility"] == "after_due_date"
    assert tests["passes"]["visibility"] == "visible"


def test_cpp_not_implemented_is_recognized_through_the_translator(cpp_graded):
    tests = by_name(cpp_graded[1])
    for name, message in (("throws NotImplemented", "NotImplemented: hw9: fn"),
                          ("throws NotImplemented inside REQUIRE, with INFO in scope",
                           "NotImplemented: hw9: stub")):
        assert outcome(tests[name]) == "failed"
        assert tests[name]["extra_data"]["not_implemented"], name
        assert tests[name]["output"].splitlines()[0] == message
    inside = tests["throws NotImplemented inside REQUIRE, with INFO in scope"]["output"]
    assert "REQUIRE( stub() == 1 )" in inside and "with info: device cpu" in inside
    other = tests["throws another error"]
    assert other["output"].splitlines()[0] == "[op] bad shape (3,)"
    assert not other["extra_data"]["not_implemented"]


def test_cpp_failed_expression_is_the_first_line(cpp_graded):
    failed = by_name(cpp_graded[1])["fails an expression"]
    assert failed["output"].splitlines()[0] == "REQUIRE( answer == 42 ) with expansion: 41 == 42"
    assert "graded_cases.cc:" in failed["output"]
    assert "the answer is 41" in failed["output"]  # what the test printed


def test_cpp_crash_and_timeout(cpp_graded):
    tests = by_name(cpp_graded[1])
    assert outcome(tests["aborts"]) == "crashed"
    assert "SIGABRT" in tests["aborts"]["output"].splitlines()[0]
    assert outcome(tests["hangs"]) == "timeout"
    assert tests["hangs"]["output"].startswith("Timeout: the test took longer than its 2 s")


def test_cpp_reference_hw1_scores_full_marks(tmp_path):
    if not (REPO / "build" / "needle_tests").exists():
        pytest.skip("the reference build (make build) is missing")
    _, results = grade("hw1", "--no-build", "--only", "cpp", "--results",
                       tmp_path / "results.json")
    check_gradescope_shape(results)
    assert results["tests"] and all(outcome(t) == "passed" for t in results["tests"])
    assert results["score"] == len(results["tests"])


def test_missing_test_binary_still_writes_results(tmp_path):
    _, results = grade("hw1", "--no-build", "--only", "cpp", "--build-dir", tmp_path / "none",
                       "--results", tmp_path / "results.json")
    check_gradescope_shape(results)
    (missing,) = results["tests"]
    assert missing["status"] == "failed" and "does not exist" in missing["output"]


# --- the build ---

def test_failing_build_gives_one_failed_build_test(tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(FIXTURES / "broken_build", root)
    stdout, results = grade("hw1", "--root", root, "--results", tmp_path / "r" / "results.json")
    check_gradescope_shape(results)
    assert results["score"] == 0
    (build,) = results["tests"]
    assert (build["name"], build["status"]) == ("build", "failed")
    first = build["output"].splitlines()[0]
    assert "broken.cc" in first and "error:" in first and "undeclared_name" in first
    assert "BUILD FAILED" in stdout and "undeclared_name" in stdout


def test_usage_errors_exit_nonzero(tmp_path):
    for args in (["homework1"], ["hw1", "--timeout", "0"], ["hw1", "--root", tmp_path / "no"]):
        done = subprocess.run([sys.executable, str(TOOLS / "grade"), *map(str, args)],
                              capture_output=True, text=True)
        assert done.returncode == 2, args


# --- run_autograder on a fake /autograder tree ---

def fake_autograder(root, assignment="hw9"):
    """ROOT/source: the grader's tools, a CMake project with nothing to build, one hw9 test
    that checks the submitted python/answer.py; ROOT/submission empty."""
    source = root / "source"
    shutil.copytree(TOOLS, source / "homework" / "tools",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (source / "homework" / "ASSIGNMENT").write_text(assignment + "\n")
    (source / "homework" / assignment).mkdir()
    (source / "homework" / assignment / "student_files.txt").write_text(
        "python/answer.py\npython/helpers/other.py\n")
    (source / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.20)\nproject(fake NONE)\n")
    (source / "python" / "helpers").mkdir(parents=True)
    (source / "python" / "answer.py").write_text("VALUE = None  # the student's job\n")
    (source / "python" / "helpers" / "other.py").write_text("")
    (source / "tests" / "python").mkdir(parents=True)
    (source / "tests" / "python" / "test_answer.py").write_text(
        "import pytest\nimport answer\n\n\n@pytest.mark.hw9(points=5)\n"
        "def test_answer():\n    assert answer.VALUE == 42\n")
    (root / "submission").mkdir()
    return source


def run_autograder(root):
    done = subprocess.run([str(root / "source" / "homework" / "tools" / "run_autograder")],
                          cwd=root, env=dict(os.environ, AUTOGRADER_ROOT=str(root)),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads((root / "results" / "results.json").read_text())


def test_run_autograder_copies_the_listed_files_found_one_folder_deeper(tmp_path):
    source = fake_autograder(tmp_path)
    submitted = tmp_path / "submission" / "my-repo" / "python" / "answer.py"
    submitted.parent.mkdir(parents=True)
    submitted.write_text("VALUE = 42\n")
    os.utime(submitted, (946684800, 946684800))  # older than the build: must still count
    (tmp_path / "submission" / "my-repo" / "python" / "sneaky.py").write_text("X = 1\n")
    stdout, results = run_autograder(tmp_path)
    check_gradescope_shape(results)
    assert (source / "python" / "answer.py").read_text() == "VALUE = 42\n"
    assert (source / "python" / "answer.py").stat().st_mtime > 946684800
    assert not (source / "python" / "sneaky.py").exists()  # only listed files are copied
    assert results["output"].startswith("Submitted files of hw9: 1 found, 1 missing.")
    assert "MISSING  python/helpers/other.py" in results["output"]
    assert "from my-repo/python/answer.py" in stdout
    answer = by_name(results)["test_answer.py::test_answer"]
    assert (answer["score"], answer["max_score"]) == (5, 5)


def test_run_autograder_finds_a_file_dragged_in_alone(tmp_path):
    source = fake_autograder(tmp_path)
    (tmp_path / "submission" / "answer.py").write_text("VALUE = 42\n")
    _, results = run_autograder(tmp_path)
    assert (source / "python" / "answer.py").read_text() == "VALUE = 42\n"
    assert by_name(results)["test_answer.py::test_answer"]["score"] == 5


def test_run_autograder_without_a_grader_still_writes_results(tmp_path):
    shutil.copytree(TOOLS, tmp_path / "source" / "homework" / "tools",
                    ignore=shutil.ignore_patterns("__pycache__"))  # no ASSIGNMENT, no tree
    _, results = run_autograder(tmp_path)
    assert results["score"] == 0
    assert results["tests"][0]["status"] == "failed"
    assert "ASSIGNMENT" in results["tests"][0]["output"]


# --- package ---

def make_package(hw, out):
    done = subprocess.run([sys.executable, str(TOOLS / "package"), hw, str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_package_layout(tmp_path):
    stdout = make_package("hw1", tmp_path / "hw1.zip")
    assert "files" in stdout and "KiB" in stdout
    with zipfile.ZipFile(tmp_path / "hw1.zip") as archive:
        names = archive.namelist()
        modes = {i.filename: i.external_attr >> 16 for i in archive.infolist()}
        assert archive.read("homework/ASSIGNMENT").decode().strip() == "hw1"
        listed = archive.read("homework/hw1/student_files.txt").decode().split()
    assert {"setup.sh", "run_autograder", "homework/tools/grade", ".ci/install-deps"} <= set(names)
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    assert listed and all(path in names for path in listed)
    assert not [n for n in names if n.startswith(("build/", ".git/")) or "/.git/" in n
                or ".so" in Path(n).suffixes or n.endswith(".pyc")]
    assert "homework/tools/make_student" not in names  # instructor-only


@pytest.fixture
def packaged_hw1():
    """A fake /autograder made from `package hw1` under build/homework-tmp (so ccache reuses
    the reference build's objects). Left there for inspection; the next run replaces it."""
    root = SCRATCH / "autograder-hw1"
    shutil.rmtree(root, ignore_errors=True)
    (root / "source").mkdir(parents=True)
    make_package("hw1", SCRATCH / "hw1.zip")
    with zipfile.ZipFile(SCRATCH / "hw1.zip") as archive:
        for info in archive.infolist():
            archive.extract(info, root / "source")
            os.chmod(root / "source" / info.filename, info.external_attr >> 16 or 0o644)
    (root / "submission").mkdir()
    return root


def run_packaged(root):
    done = subprocess.run([str(root / "source" / "run_autograder")], cwd=root,
                          env=dict(os.environ, AUTOGRADER_ROOT=str(root),
                                   CCACHE_BASEDIR=str(REPO)),
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


def first_line(test):
    return test["output"].splitlines()[0] if test["output"] else outcome(test)


@pytest.mark.slow
def test_packaged_hw1_gives_the_reference_full_marks(packaged_hw1):
    listed = (packaged_hw1 / "source" / "homework" / "hw1" / "student_files.txt").read_text()
    for path in listed.split():
        dest = packaged_hw1 / "submission" / "needle" / path  # the repository folder uploaded
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / path, dest)
    results = run_packaged(packaged_hw1)
    check_gradescope_shape(results)
    assert " 0 missing." in results["output"]
    graded = [t for t in results["tests"] if outcome(t) != "skipped"]
    failing = [f"  {t['name']}: {first_line(t)}" for t in graded if outcome(t) != "passed"]
    assert graded and not failing, (
        "hw1 tests that the reference's hw1 files do not pass in the hw1 package (do they "
        "need a later assignment's code?):\n" + "\n".join(failing))
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) > 0


@pytest.mark.slow
def test_packaged_hw1_with_nothing_submitted_scores_zero(packaged_hw1):
    results = run_packaged(packaged_hw1)
    check_gradescope_shape(results)
    assert "0 found" in results["output"]
    given_away = [f"  {t['name']}" for t in results["tests"] if t["score"] > 0]
    assert not given_away, (
        "hw1 tests that pass with nothing submitted (no hw1 region covers what they "
        "test):\n" + "\n".join(given_away))
    assert results["score"] == 0
    assert any(t["extra_data"]["not_implemented"] for t in results["tests"])
