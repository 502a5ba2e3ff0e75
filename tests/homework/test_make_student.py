"""make_student on small synthetic repositories: what is cut, what is kept, the stubs in each
language, the CUDA launch guards, hidden tests, and the errors for bad markers."""
import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "homework" / "tools"
sys.path.insert(0, str(TOOLS))
import hwlib  # noqa: E402

CPP = """\
#include "needle/error.h"
namespace needle {
int NDArray::size() const {
  // BEGIN SOLUTION hw0
  return 6;
  // END SOLUTION
}
double Add::compute(double a, double b) const {
  auto add = [&](double x) {
    // BEGIN SOLUTION hw1
    return x + b;
    // END SOLUTION
  };
  return add(a);
}
}  // namespace needle
"""

CUDA = """\
template <class T>
__device__ inline T twice(T x) {
  // BEGIN SOLUTION hw3
  return x + x;
  // END SOLUTION
}
template <class T>
__global__ void twice_kernel(const T* a, T* out, int n) {
  int i = threadIdx.x;
  if (i < n) out[i] = twice(a[i]);
}
__global__ void untouched_kernel(float* out) { out[0] = 1; }
void launch(const float* a, float* out, int n) {
  twice_kernel<float>
      <<<1, n>>>(a, out, n);
  untouched_kernel<<<1, 1>>>(out);
}
"""

PY = """\
def relu(x):
    \"\"\"max(x, 0).\"\"\"
    # BEGIN SOLUTION hw2
    return max(x, 0)
    # END SOLUTION


class Linear:
    def forward(self, x):
        y = x
        # BEGIN SOLUTION hw1
        y = 2 * x
        # END SOLUTION
        return y
"""

PY_TEST = """\
import pytest


def test_visible():
    assert True


@pytest.mark.hw1
@pytest.mark.hidden
def test_secret():
    assert True
"""

CPP_TEST = """\
TEST_CASE("visible", "[hw1]") { CHECK(true); }

TEST_CASE("secret", "[hw1][hidden]") {
  if (true) { CHECK(true); }
}
"""


def make_repo(tmp_path, files):
    root = tmp_path / "ref"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path, {"needle/a.cc": CPP, "backend_cuda/k.cu": CUDA, "python/m.py": PY,
                                "tests/python/test_x.py": PY_TEST, "tests/cpp/test_y.cc": CPP_TEST,
                                "homework/hw1/README.md": "hw1", "homework/hw2/README.md": "hw2"})


def test_cuts_this_and_later_assignments_and_keeps_earlier_ones(repo, tmp_path):
    out = tmp_path / "hw1"
    assert hwlib.make_student(repo, "hw1", out) == ["needle/a.cc", "python/m.py"]
    cpp = (out / "needle/a.cc").read_text()
    assert "return 6;" in cpp and "BEGIN SOLUTION" not in cpp  # hw0 kept, markers gone
    assert 'throw needle::NotImplemented("hw1: Add::compute");' in cpp
    assert "x + b" not in cpp
    py = (out / "python/m.py").read_text()
    assert 'raise NotImplementedError("hw2: relu")' in py  # later assignments are cut too
    assert 'raise NotImplementedError("hw1: Linear.forward")' in py
    assert (out / "homework/hw1/student_files.txt").read_text() == "needle/a.cc\npython/m.py\n"
    assert (out / "homework/hw1/README.md").exists() and not (out / "homework/hw2").exists()


def test_python_stubs_run_and_raise(repo, tmp_path):
    out = tmp_path / "hw1"
    hwlib.make_student(repo, "hw1", out)
    namespace = {}
    exec((out / "python/m.py").read_text(), namespace)
    with pytest.raises(NotImplementedError, match="hw1: Linear.forward"):
        namespace["Linear"]().forward(3)
    with pytest.raises(NotImplementedError, match="hw2: relu"):
        namespace["relu"](3)


def test_cuda_device_code_gets_empty_bodies_and_guarded_launches(repo, tmp_path):
    out = tmp_path / "hw3"
    hwlib.make_student(repo, "hw3", out)
    cu = (out / "backend_cuda/k.cu").read_text()
    body = cu[cu.index("twice(T x) {"):cu.index("template <class T>\n__global__")]
    assert "return {};" in body and "x + x" not in body and "throw" not in body
    guard = 'throw needle::NotImplemented("hw3: twice_kernel");'
    assert cu.count(guard) == 1 and cu.index(guard) < cu.index("twice_kernel<float>")
    assert "hw3: untouched_kernel" not in cu  # reaches no cut code
    # hw4's version keeps hw3: nothing guarded, the reference kernel intact
    hwlib.make_student(repo, "hw4", tmp_path / "hw4")
    cu4 = (tmp_path / "hw4/backend_cuda/k.cu").read_text()
    assert "x + x" in cu4 and "throw" not in cu4


def test_hidden_tests_stay_out_unless_kept(repo, tmp_path):
    hwlib.make_student(repo, "hw1", tmp_path / "student")
    py = (tmp_path / "student/tests/python/test_x.py").read_text()
    cpp = (tmp_path / "student/tests/cpp/test_y.cc").read_text()
    assert "test_visible" in py and "secret" not in py
    assert "visible" in cpp and "secret" not in cpp and cpp.count("{") == cpp.count("}")
    ast.parse(py)
    hwlib.make_student(repo, "hw1", tmp_path / "grader", keep_hidden=True)
    assert "test_secret" in (tmp_path / "grader/tests/python/test_x.py").read_text()
    assert '"secret"' in (tmp_path / "grader/tests/cpp/test_y.cc").read_text()


def test_refuses_a_non_empty_output(repo, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/file").write_text("x")
    with pytest.raises(FileExistsError):
        hwlib.make_student(repo, "hw1", tmp_path / "busy")


@pytest.mark.parametrize("text, message", [
    ("void f() {\n  // BEGIN SOLUTION hw1\n}\n", "x.cc:2: BEGIN SOLUTION hw1 is never closed"),
    ("void f() {\n  // END SOLUTION\n}\n", "x.cc:2: END SOLUTION without a BEGIN"),
    ("void f() {\n  // BEGIN SOLUTION hw1\n  // BEGIN SOLUTION hw1\n  // END SOLUTION\n}\n",
     "x.cc:3: BEGIN SOLUTION inside the region opened at line 2"),
    ("void f() {\n  // BEGIN SOLUTION\n  // END SOLUTION\n}\n", "x.cc:2: BEGIN SOLUTION needs an assignment"),
    ("void f() {\n  // BEGIN SOLUTION hw9\n  // END SOLUTION\n}\n", "x.cc:2: BEGIN SOLUTION needs an assignment"),
    ("void f() {\n  # BEGIN SOLUTION hw1\n  // END SOLUTION\n}\n", "x.cc:2: marker must start with '//'"),
    ("void f() {\n  // BEGIN SOLUTION hw1\n    // END SOLUTION\n}\n", "x.cc:3: END SOLUTION is not indented"),
    ("void f() {\n  int x = 1;  // BEGIN SOLUTION hw1\n}\n", "x.cc:2: malformed marker"),
    ("// BEGIN SOLUTION hw1\nint x = 1;\n// END SOLUTION\n", "x.cc:1: a C++ region must lie inside a function"),
])
def test_bad_markers_name_the_file_and_line(text, message):
    with pytest.raises(hwlib.MarkerError, match=re.escape(message)):
        hwlib.parse_regions("x.cc", text)


def test_python_regions_must_be_inside_a_function():
    text = "# BEGIN SOLUTION hw2\nX = 1\n# END SOLUTION\n"
    with pytest.raises(hwlib.MarkerError, match="m.py:1: a Python region must lie inside one function"):
        hwlib.parse_regions("m.py", text)


def test_command_line_reports_errors_without_a_traceback(tmp_path):
    root = make_repo(tmp_path, {"needle/a.cc": "void f() {\n  // BEGIN SOLUTION hw1\n}\n"})
    run = subprocess.run([sys.executable, str(TOOLS / "make_student"), "hw1", str(tmp_path / "out"),
                          "--root", str(root)], capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip() == "make_student: needle/a.cc:2: BEGIN SOLUTION hw1 is never closed by END SOLUTION"


def test_the_reference_repository_parses():
    """Every marker in this checkout is well formed, and each region names its function."""
    regions = hwlib.find_regions(TOOLS.parents[1])
    assert regions and all(r.function for r in regions)
    assert {r.hw for r in regions} >= {"hw0", "hw1", "hw2", "hw3", "hw4"}


def test_mask_code_blanks_comments_and_strings_only():
    text = textwrap.dedent("""\
        int a = 1'000; // } comment
        const char* s = "{ not a brace }"; /* { */ char c = '}';
        """)
    masked = hwlib.mask_code(text)
    assert len(masked) == len(text) and masked.count("\n") == text.count("\n")
    assert "{" not in masked and "}" not in masked and "1'000" in masked
