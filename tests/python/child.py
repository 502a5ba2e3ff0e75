"""A persistent child Python process that runs snippets of needle code, so that a segfault
or a hang fails one test (with the snippet shown) instead of killing the pytest run.

    with Child() as child:
        out = child.run("result = nd.array(x).flip((0,)).numpy()", x=np.ones(3))
        out.kind     # "ok", "error" (a Python exception) or "crash" (the child died / hung)
        out.value    # `result` (for "ok"), the exception type name (for "error")
        out.message  # the exception message, or how the child died

The child imports numpy as np, needle as ndl, needle.backend_ndarray as nd and
needle.ops / nn / init / optim once; each snippet gets a fresh namespace with those names
and its keyword arguments. It is restarted after a crash, so later snippets still run.
"""
import os
import pickle
import select
import struct
import subprocess
import sys
from dataclasses import dataclass

_PYTHON_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python")

_CHILD_MAIN = r"""
import os, pickle, struct, sys, traceback
out = os.fdopen(int(sys.argv[1]), "wb", buffering=0)
inp = sys.stdin.buffer
import numpy as np
import needle as ndl
import needle.backend_ndarray as nd
from needle import ops, nn, init, optim
BASE = dict(np=np, ndl=ndl, nd=nd, ops=ops, nn=nn, init=init, optim=optim)
def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = inp.read(n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data
while True:
    (n,) = struct.unpack("<Q", read_exact(8))
    code, kwargs = pickle.loads(read_exact(n))
    ns = dict(BASE, **kwargs)
    try:
        exec(code, ns)
        reply = ("ok", ns.get("result"), "")
    except BaseException as e:
        reply = ("error", type(e).__name__, str(e))
    try:
        data = pickle.dumps(reply)
    except Exception as e:
        data = pickle.dumps(("error", "PicklingError", repr(e)))
    out.write(struct.pack("<Q", len(data)) + data)
"""


@dataclass
class Outcome:
    kind: str  # "ok", "error" or "crash"
    value: object = None
    message: str = ""

    def __repr__(self):
        return f"Outcome({self.kind}, {self.value!r}, {self.message!r})"


class Child:
    """A worker process; run() sends it one snippet and waits at most `timeout` seconds."""

    def __init__(self, timeout=60.0):
        self.timeout = timeout
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            os.close(self.reply_fd)
            self.proc = None

    def _start(self):
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, PYTHONPATH=_PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_MAIN, str(write_fd)],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env,
        )
        os.close(write_fd)
        self.reply_fd = read_fd

    def _read_exact(self, n, deadline_s):
        data = b""
        while len(data) < n:
            ready, _, _ = select.select([self.reply_fd], [], [], deadline_s)
            if not ready:
                raise TimeoutError
            chunk = os.read(self.reply_fd, n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def run(self, code, **kwargs):
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        payload = pickle.dumps((code, kwargs))
        try:
            self.proc.stdin.write(struct.pack("<Q", len(payload)) + payload)
            self.proc.stdin.flush()
            (n,) = struct.unpack("<Q", self._read_exact(8, self.timeout))
            kind, value, message = pickle.loads(self._read_exact(n, self.timeout))
            return Outcome(kind, value, message)
        except TimeoutError:
            self.close()
            return Outcome("crash", None, f"hung for more than {self.timeout} s")
        except (EOFError, BrokenPipeError):
            rc = self.proc.wait()
            self.close()
            return Outcome("crash", None, f"child died with exit status {rc}")
