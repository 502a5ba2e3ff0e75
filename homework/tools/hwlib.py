"""Homework regions: finding them in the reference, cutting them into stubs, and writing the
student repository of one assignment (homework/tools/make_student is the command line).

A region is `// BEGIN SOLUTION hwN` ... `// END SOLUTION` in C++ and CUDA, and
`# BEGIN SOLUTION hwN` ... `# END SOLUTION` in Python (../shared/HOMEWORK.md). Cutting hwN
replaces every region of hwN and of later assignments with a stub that still compiles:
- C++ host code throws `needle::NotImplemented("hwN: <function>")`;
- Python raises `NotImplementedError("hwN: <function>")`;
- CUDA device code cannot throw, so its region becomes an empty body (or `return {};`), and every
  launch of a kernel that reaches cut device code gets a `throw` in front of it on the host.
Regions of earlier assignments are kept, without their markers. Tests marked hidden
(`@pytest.mark.hidden`, Catch2 tag `[hidden]`) are left out unless keep_hidden is set.
"""
from __future__ import annotations

import ast
import dataclasses
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

ASSIGNMENTS = [f"hw{n}" for n in range(8)]
CPP_SUFFIXES = {".h", ".hpp", ".cc", ".cpp"}
CUDA_SUFFIXES = {".cu", ".cuh"}
PY_SUFFIXES = {".py"}
SOURCE_SUFFIXES = CPP_SUFFIXES | CUDA_SUFFIXES | PY_SUFFIXES
# Instructor-only files: the generator itself and the grader's packaging stay out of student repos.
INSTRUCTOR_ONLY = ("homework/tools/make_student", "homework/tools/hwlib.py",
                   "homework/tools/package", "homework/tools/selftest", "tests/homework/")

_MARKER = re.compile(r"^(?P<indent>\s*)(?P<lead>//|#)\s*(?P<kind>BEGIN|END) SOLUTION\b(?P<rest>.*)$")
_CONTROL_WORDS = {"if", "for", "while", "switch", "catch", "do", "else", "try", "return"}


class MarkerError(ValueError):
    """A malformed or unbalanced marker; the message names the file and line."""


@dataclasses.dataclass
class Region:
    path: str        # repo-relative, with forward slashes
    hw: str          # "hw0" ... "hw7"
    begin: int       # 0-based line index of the BEGIN marker
    end: int         # 0-based line index of the END marker
    indent: str      # the BEGIN marker's indentation, reused by the stub
    function: str = ""
    device: bool = False         # inside a CUDA __device__ / __global__ function
    returns_value: bool = False  # device function that must still return something
    ends_body: bool = False      # the region runs up to the function's closing brace


def hw_index(hw: str) -> int:
    if hw not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {hw!r}: expected one of {', '.join(ASSIGNMENTS)}")
    return ASSIGNMENTS.index(hw)


def language_of(path: str) -> str:
    suffix = Path(path).suffix
    if suffix in PY_SUFFIXES:
        return "python"
    if suffix in CUDA_SUFFIXES:
        return "cuda"
    return "cpp"


# ----------------------------------------------------------------------------------------------
# Finding regions
# ----------------------------------------------------------------------------------------------

def parse_regions(path: str, text: str) -> list[Region]:
    """Every region of one file, checked: balanced, not nested, a known assignment, the comment
    style of the file's language, and (in Python) inside one function."""
    lead_expected = "#" if language_of(path) == "python" else "//"
    regions, open_region = [], None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _MARKER.match(line)
        if not m:
            if "BEGIN SOLUTION" in line or "END SOLUTION" in line:
                raise MarkerError(f"{path}:{i + 1}: malformed marker (a marker is a line of its own:"
                                  f" '{lead_expected} BEGIN SOLUTION hwN' or '{lead_expected} END SOLUTION')")
            continue
        where = f"{path}:{i + 1}"
        if m["lead"] != lead_expected:
            raise MarkerError(f"{where}: marker must start with '{lead_expected}' in this file")
        rest = m["rest"].strip()
        if m["kind"] == "BEGIN":
            if open_region is not None:
                raise MarkerError(f"{where}: BEGIN SOLUTION inside the region opened at line "
                                  f"{open_region.begin + 1} (regions do not nest)")
            if rest not in ASSIGNMENTS:
                raise MarkerError(f"{where}: BEGIN SOLUTION needs an assignment, one of "
                                  f"{ASSIGNMENTS[0]}..{ASSIGNMENTS[-1]} (got {rest or 'nothing'!r})")
            open_region = Region(path, rest, i, -1, m["indent"])
        else:
            if rest:
                raise MarkerError(f"{where}: END SOLUTION takes nothing after it (got {rest!r})")
            if open_region is None:
                raise MarkerError(f"{where}: END SOLUTION without a BEGIN SOLUTION")
            if m["indent"] != open_region.indent:
                raise MarkerError(f"{where}: END SOLUTION is not indented as its BEGIN SOLUTION at line "
                                  f"{open_region.begin + 1} (a region is one block)")
            open_region.end = i
            regions.append(open_region)
            open_region = None
    if open_region is not None:
        raise MarkerError(f"{path}:{open_region.begin + 1}: BEGIN SOLUTION {open_region.hw} "
                          "is never closed by END SOLUTION")
    if language_of(path) == "python":
        _name_python_regions(path, text, regions)
    else:
        _name_cpp_regions(text, regions)
    return regions


def _name_python_regions(path: str, text: str, regions: list[Region]) -> None:
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise MarkerError(f"{path}:{e.lineno}: not valid Python ({e.msg})") from None
    functions = []  # (first line, last line, qualified name), 0-based

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    functions.append((child.lineno - 1, child.end_lineno - 1, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    for r in regions:
        enclosing = [f for f in functions if f[0] < r.begin <= f[1]]
        if not enclosing:
            raise MarkerError(f"{path}:{r.begin + 1}: a Python region must lie inside one function")
        r.function = max(enclosing, key=lambda f: f[0])[2]


def mask_code(text: str) -> str:
    """C/C++/CUDA text with comments and string/char literals blanked (newlines kept), so
    braces, semicolons and names can be found by position."""
    out, i, n = list(text), 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            if c == "'" and j - i > 4:  # a digit separator (1'000), not a char literal
                i += 1
                continue
        else:
            i += 1
            continue
        for k in range(i, j):
            if out[k] != "\n":
                out[k] = " "
        i = j
    return "".join(out)


def _line_offsets(text: str) -> list[int]:
    offsets, pos = [], 0
    for line in text.splitlines(keepends=True):
        offsets.append(pos)
        pos += len(line)
    offsets.append(pos)
    return offsets


def _matching_close(masked: str, open_pos: int) -> int:
    depth = 0
    for j in range(open_pos, len(masked)):
        if masked[j] == "{":
            depth += 1
        elif masked[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(masked)


def _enclosing_function(masked: str, pos: int):
    """(name, signature, open brace, close brace) of the function whose body holds pos,
    skipping the blocks of lambdas and control statements; None at namespace scope."""
    depth, j = 0, pos
    while j > 0:
        j -= 1
        ch = masked[j]
        if ch == "}":
            depth += 1
        elif ch == "{":
            if depth:
                depth -= 1
                continue
            head_start = max(masked.rfind(";", 0, j), masked.rfind("{", 0, j), masked.rfind("}", 0, j)) + 1
            head = masked[head_start:j].strip()
            name = _function_name(head)
            if name:
                return name, head, j, _matching_close(masked, j)
    return None


def _function_name(head: str) -> str:
    """The qualified name a function head declares, or "" for a lambda, a control statement,
    a class or a namespace."""
    if not head or head.endswith("]") or re.search(r"\b(namespace|struct|class|union|enum)\b[^()]*$", head):
        return ""
    paren = head.find("(")
    if paren < 0:
        return ""
    before = head[:paren].rstrip()
    if before.endswith("]") or re.search(r"\]\s*(mutable|constexpr)?\s*$", before):
        return ""  # a lambda's capture list
    m = re.search(r"((?:[A-Za-z_]\w*\s*::\s*)*~?[A-Za-z_]\w*|operator\s*\S+)\s*$", before)
    if not m or m.group(1) in _CONTROL_WORDS:
        return ""
    return re.sub(r"\s+", "", m.group(1))


def _name_cpp_regions(text: str, regions: list[Region]) -> None:
    masked = mask_code(text)
    offsets = _line_offsets(text)
    for r in regions:
        found = _enclosing_function(masked, offsets[r.begin])
        if found is None:
            raise MarkerError(f"{r.path}:{r.begin + 1}: a C++ region must lie inside a function body")
        name, head, _, close = found
        if close < offsets[r.end]:
            raise MarkerError(f"{r.path}:{r.begin + 1}: the region ends outside its function {name}")
        r.function = re.sub(r"^needle::", "", name)
        r.device = bool(re.search(r"\b__(device|global)__\b", head))
        r.returns_value = r.device and not re.search(r"\bvoid\b", head.split("(")[0])
        r.ends_body = masked[offsets[r.end + 1]:close].strip() == ""


# ----------------------------------------------------------------------------------------------
# The files of a checkout
# ----------------------------------------------------------------------------------------------

def repo_files(root: Path) -> list[str]:
    """Tracked files plus untracked ones git does not ignore: what a clean checkout would hold
    once the working tree's changes are committed."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], check=True, capture_output=True).stdout
    files = sorted({f for f in out.decode().split("\0") if f})
    return [f for f in files if (root / f).is_file()]


def find_regions(root: Path, files: list[str] | None = None) -> list[Region]:
    regions = []
    for f in files if files is not None else repo_files(root):
        if Path(f).suffix in SOURCE_SUFFIXES and not f.startswith(("homework/", "tests/")):
            text = (root / f).read_text()
            if "SOLUTION" in text:
                regions.extend(parse_regions(f, text))
    return regions


# ----------------------------------------------------------------------------------------------
# Cutting
# ----------------------------------------------------------------------------------------------

def _stub_lines(r: Region) -> list[str]:
    lang = language_of(r.path)
    message = f"{r.hw}: {r.function}"
    if lang == "python":
        body = [f'raise NotImplementedError("{message}")']
        lead = "#"
    elif r.device:
        body = ["return {};"] if r.returns_value and r.ends_body else []
        lead = "//"
    else:
        body = [f'throw needle::NotImplemented("{message}");']
        lead = "//"
    return ([f"{r.indent}{lead} BEGIN YOUR SOLUTION {r.hw}"] + [r.indent + b for b in body]
            + [f"{r.indent}{lead} END YOUR SOLUTION"])


def cut_text(text: str, regions: list[Region], hw: str) -> str:
    """text with the regions of hw and later assignments stubbed and the markers of earlier
    ones removed."""
    cut_from = hw_index(hw)
    lines = text.splitlines(keepends=True)
    newline = "\n"
    for r in sorted(regions, key=lambda r: r.begin, reverse=True):
        if hw_index(r.hw) >= cut_from:
            lines[r.begin:r.end + 1] = [s + newline for s in _stub_lines(r)]
        else:
            del lines[r.end]
            del lines[r.begin]
    return "".join(lines)


_DEVICE_FN = re.compile(r"\b__(?:device|global)__\b[^;{}]*?\b([A-Za-z_]\w*)\s*\(")


def _device_functions(masked: str):
    """(name, is_kernel, body text) of each CUDA device function and kernel defined in
    masked text."""
    for m in _DEVICE_FN.finditer(masked):
        open_pos = masked.find("{", m.end())
        semi = masked.find(";", m.end())
        if open_pos < 0 or (0 <= semi < open_pos):
            continue  # a declaration
        yield m.group(1), "__global__" in m.group(0), masked[open_pos:_matching_close(masked, open_pos) + 1]


def _launch_sites(masked: str, kernel: str):
    """Start offsets of the statements that launch kernel with <<<...>>>."""
    for m in re.finditer(rf"\b{re.escape(kernel)}\b", masked):
        j = m.end()
        while j < len(masked) and masked[j].isspace():
            j += 1
        if not masked.startswith("<<<", j) and masked.startswith("<", j):
            depth = 0
            while j < len(masked):
                if masked[j] == "<":
                    depth += 1
                elif masked[j] == ">":
                    depth -= 1
                    if depth == 0:
                        j += 1
                        break
                j += 1
            while j < len(masked) and masked[j].isspace():
                j += 1
        if masked.startswith("<<<", j):
            yield max(masked.rfind(";", 0, m.start()), masked.rfind("{", 0, m.start()),
                      masked.rfind("}", 0, m.start())) + 1


def guard_cut_kernels(texts: dict[str, str], cut_functions: dict[str, str]) -> dict[str, str]:
    """CUDA files with a throw in front of every launch of a kernel that reaches cut device code.
    texts maps path to (already cut) source; cut_functions maps a cut device function's name to
    its assignment. A function reaches cut code when it calls a cut function, transitively."""
    masked = {p: mask_code(t) for p, t in texts.items()}
    functions = {}  # name -> (is a kernel, bodies): overloads and templates share a name
    for m in masked.values():
        for name, kernel, body in _device_functions(m):
            k0, b0 = functions.get(name, (False, ""))
            functions[name] = (kernel or k0, b0 + body)
    reaches = dict(cut_functions)
    changed = True
    while changed:
        changed = False
        for name, (_, body) in functions.items():
            if name in reaches:
                continue
            for cut, hw in list(reaches.items()):
                if re.search(rf"\b{re.escape(cut)}\b", body):
                    reaches[name] = hw
                    changed = True
                    break
    out = {}
    for path, text in texts.items():
        inserts = []
        for name, hw in reaches.items():
            if functions.get(name, (False, ""))[0]:
                inserts += [(pos, name, hw) for pos in _launch_sites(masked[path], name)]
        for pos, name, hw in sorted(set(inserts), reverse=True):
            launch_line = text.rfind("\n", 0, re.compile(r"\s*").match(text, pos).end()) + 1
            indent = re.compile(r"[ \t]*").match(text, launch_line).group(0)
            text = (text[:pos] + f'\n{indent}throw needle::NotImplemented("{hw}: {name}");'
                    "  // delete once written" + text[pos:])
        out[path] = text
    return out


def remove_hidden_tests(path: str, text: str) -> str | None:
    """A test file without its hidden tests; None when the whole file is hidden."""
    if path.endswith(".py"):
        tree = ast.parse(text)
        lines = text.splitlines(keepends=True)
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
                if "mark.hidden" in ast.get_source_segment(text, node):
                    return None
        spans = []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if any("mark.hidden" in ast.get_source_segment(text, d) for d in node.decorator_list):
                    first = min(d.lineno for d in node.decorator_list) - 1
                    spans.append((first, node.end_lineno))
        for first, last in sorted(spans, reverse=True):
            del lines[first:last]
        return "".join(lines)
    masked = mask_code(text)
    spans = []
    for m in re.finditer(r"\bTEST_CASE\s*\(", text):
        close_paren = masked.find(")", m.end())
        if "[hidden]" not in text[m.end():close_paren]:
            continue
        open_brace = masked.find("{", close_paren)
        spans.append((m.start(), _matching_close(masked, open_brace) + 1))
    for start, stop in sorted(spans, reverse=True):
        text = text[:start] + text[stop:].lstrip("\n")
    return text


def _is_test_file(path: str) -> bool:
    return path.startswith("tests/") and (path.endswith(".py") or Path(path).suffix in CPP_SUFFIXES)


def _excluded(path: str, hw: str) -> bool:
    if any(path == p or (p.endswith("/") and path.startswith(p)) for p in INSTRUCTOR_ONLY):
        return True
    m = re.match(r"homework/(hw\d+)/", path)
    return bool(m) and m.group(1) != hw


def make_student(root: Path, hw: str, out: Path, keep_hidden: bool = False) -> list[str]:
    """Write the student repository of hw into out (which must not exist or be empty). Returns
    the repo-relative paths of the files holding hw's regions (also written to
    out/homework/hw/student_files.txt)."""
    hw_index(hw)
    root, out = Path(root).resolve(), Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    files = [f for f in repo_files(root) if not _excluded(f, hw)]
    regions = find_regions(root, files)
    by_file: dict[str, list[Region]] = {}
    for r in regions:
        by_file.setdefault(r.path, []).append(r)

    texts = {}
    for f in files:
        if f in by_file:
            texts[f] = cut_text((root / f).read_text(), by_file[f], hw)
    cut_device = {r.function: r.hw for r in regions
                  if r.device and hw_index(r.hw) >= hw_index(hw)}
    cuda_texts = {f: texts.get(f, (root / f).read_text()) for f in files
                  if Path(f).suffix in CUDA_SUFFIXES}
    if cut_device:
        texts.update({f: t for f, t in guard_cut_kernels(cuda_texts, cut_device).items()
                      if t != cuda_texts[f]})

    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        dest = out / f
        dest.parent.mkdir(parents=True, exist_ok=True)
        if f in texts or (_is_test_file(f) and not keep_hidden):
            text = texts[f] if f in texts else (root / f).read_text()
            if _is_test_file(f) and not keep_hidden:
                text = remove_hidden_tests(f, text)
                if text is None:
                    continue
            dest.write_text(text)
            shutil.copymode(root / f, dest)
        else:
            shutil.copy2(root / f, dest)
    student_files = sorted({r.path for r in regions if r.hw == hw})
    (out / "homework" / hw).mkdir(parents=True, exist_ok=True)
    (out / "homework" / hw / "student_files.txt").write_text("".join(p + "\n" for p in student_files))
    return student_files
