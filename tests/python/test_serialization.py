"""Checkpoints (needle.save / needle.load, safetensors): round trips give identical outputs,
the header layout is the standard one (parsed here by hand with struct + json), damaged
files and mismatched state dicts raise clear errors, and a failed save leaves neither a
partial file nor a damaged old one."""
import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import needle as ndl
import needle.nn as nn
from needle import backend_ndarray as nd
from needle import serialization

DEVICES = [
    nd.cpu(),
    pytest.param(nd.cuda(), marks=pytest.mark.skipif(not nd.cuda().enabled(), reason="no CUDA device")),
]
IDS = ["cpu", "cuda"]
PYTHON_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "python")


def read_header(path):
    """(header dict, data bytes) of a safetensors file, parsed without needle."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n].decode("utf-8")), raw[8 + n :], n


def write_safetensors(path, arrays, metadata=None):
    """A minimal independent writer (as another tool would write the format)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, a in arrays.items():
        a = np.asarray(a, order="C")
        data = a.astype(a.dtype.newbyteorder("<")).tobytes()
        dtype = {"float32": "F32", "float64": "F64", "int64": "I64", "int32": "I32", "uint8": "U8",
                 "bool": "BOOL"}[a.dtype.name]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def small_model(device):
    return nn.Sequential(
        nn.Linear(6, 8, device=device),
        nn.BatchNorm1d(8, device=device),
        nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Linear(8, 8, device=device), nn.LayerNorm1d(8, device=device))),
        nn.Linear(8, 3, device=device),
    )


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_model_round_trip_gives_identical_outputs(tmp_path, device):
    np.random.seed(0)
    model = small_model(device)
    x = ndl.Tensor(np.random.randn(5, 6).astype(np.float32), device=device)
    model.train()
    model(x)  # moves the BatchNorm running statistics away from their initial values
    model.eval()
    want = model(x).numpy()
    path = tmp_path / "model.safetensors"
    serialization.save(model.state_dict(), path)

    np.random.seed(1)
    fresh = small_model(device)
    fresh.eval()
    assert not np.array_equal(fresh(x).numpy(), want)
    loaded = serialization.load(path, device=device)
    assert set(loaded) == set(model.state_dict())
    for name, t in loaded.items():
        assert isinstance(t, ndl.Tensor)
        assert not t.requires_grad
        assert t.device == device
        np.testing.assert_array_equal(t.numpy(), model.state_dict()[name].numpy())
    fresh.load_state_dict(loaded)
    np.testing.assert_array_equal(fresh(x).numpy(), want)
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]  # no temporary left behind


def test_header_layout_is_standard_safetensors(tmp_path):
    path = str(tmp_path / "h.safetensors")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([[0.5], [-2.25]], dtype=np.float64)
    serialization.save(
        {"a": ndl.Tensor(a), "b": ndl.Tensor(b, requires_grad=True), "c": np.float32(3.0)},
        path,
        metadata={"epoch": 3},
    )
    header, data, n = read_header(path)
    assert n % 8 == 0
    assert header["__metadata__"] == {"epoch": "3"}
    assert header["a"]["dtype"] == "F32" and header["a"]["shape"] == [2, 3]
    assert header["b"]["dtype"] == "F64" and header["b"]["shape"] == [2, 1]
    assert header["c"]["shape"] == []
    spans = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    assert all(x[1] == y[0] for x, y in zip(spans, spans[1:]))  # contiguous, no overlap
    for name, want in (("a", a), ("b", b)):
        lo, hi = header[name]["data_offsets"]
        got = np.frombuffer(data[lo:hi], dtype="<f4" if want.dtype == np.float32 else "<f8")
        np.testing.assert_array_equal(got.reshape(want.shape), want)
    loaded = serialization.load(path)
    assert loaded["b"].dtype == "float64"
    assert loaded["a"].dtype == "float32"
    assert serialization.load_metadata(path) == {"epoch": "3"}


def test_files_from_another_writer_load(tmp_path):
    path = tmp_path / "other.safetensors"
    arrays = {"w": np.random.randn(3, 4).astype(np.float32), "s": np.array(2.5), "é": np.zeros((0, 2), np.float32)}
    write_safetensors(path, arrays, {"who": "test"})
    loaded = serialization.load(path)
    for name, a in arrays.items():
        assert loaded[name].shape == a.shape
        np.testing.assert_array_equal(loaded[name].numpy(), a)


@pytest.mark.parametrize("device", DEVICES, ids=IDS)
def test_every_dtype_round_trips_and_reads_from_another_writer(tmp_path, device):
    arrays = {name: (np.arange(12).reshape(3, 4) % 5).astype(name)
              for name in ("bool", "uint8", "int32", "int64", "float32", "float64")}
    ndl.save({**arrays, "labels": ndl.Tensor([3, 1, 4])}, tmp_path / "mine.safetensors")
    write_safetensors(tmp_path / "other.safetensors", arrays)
    for file in ("mine", "other"):
        loaded = ndl.load(tmp_path / f"{file}.safetensors", device=device)
        for name, a in arrays.items():
            assert loaded[name].dtype == name
            np.testing.assert_array_equal(loaded[name].numpy(), a)
    assert ndl.load(tmp_path / "mine.safetensors")["labels"].dtype == "int64"
    # A BOOL byte other than 0 or 1 is no bool: refused, naming the tensor.
    write_safetensors(tmp_path / "bad.safetensors", {"mask": np.array([0, 2], np.uint8)})
    header, data, _ = read_header(tmp_path / "bad.safetensors")
    header["mask"]["dtype"] = "BOOL"
    text = json.dumps(header).encode("utf-8")
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + data)
    with pytest.raises(ValueError, match="'mask' of dtype BOOL holds a byte other than 0 or 1"):
        ndl.load(tmp_path / "bad.safetensors")


def test_damaged_and_foreign_files_raise_value_error(tmp_path):
    good = tmp_path / "good.safetensors"
    serialization.save({"w": np.ones((4, 4), np.float32), "b": np.zeros(3)}, good)
    raw = good.read_bytes()
    for cut in (0, 5, 8, 20, len(raw) // 2, len(raw) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match=f"cut{cut}.safetensors"):
            serialization.load(bad)
    text = tmp_path / "notes.txt"
    text.write_text("just some text, not a checkpoint\n")
    with pytest.raises(ValueError, match="not a safetensors file"):
        serialization.load(text)
    header, data, n = read_header(good)
    header["w"]["dtype"] = "F16"
    weird = json.dumps(header).encode()
    (tmp_path / "f16").write_bytes(struct.pack("<Q", len(weird)) + weird + data)
    with pytest.raises(ValueError, match="F16"):
        serialization.load(tmp_path / "f16")
    with pytest.raises(ValueError, match="missing.safetensors"):
        serialization.load(tmp_path / "missing.safetensors")


def test_mismatched_state_dict_names_the_key(tmp_path):
    np.random.seed(0)
    path = tmp_path / "m.safetensors"
    serialization.save(small_model(None).state_dict(), path)
    other = nn.Sequential(nn.Linear(6, 9), nn.BatchNorm1d(9), nn.ReLU(),
                          nn.Residual(nn.Sequential(nn.Linear(9, 9), nn.LayerNorm1d(9))), nn.Linear(9, 3))
    with pytest.raises((ValueError, KeyError), match=r"modules\.0\.weight"):
        other.load_state_dict(serialization.load(path))
    state = serialization.load(path)
    del state["modules.4.bias"]
    with pytest.raises((ValueError, KeyError), match=r"modules\.4\.bias"):
        small_model(None).load_state_dict(state)


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError):
        serialization.save([np.ones(2)], tmp_path / "x")
    with pytest.raises(TypeError):
        serialization.save({1: np.ones(2)}, tmp_path / "x")
    with pytest.raises(TypeError):
        serialization.save({"a": "text"}, tmp_path / "x")
    with pytest.raises(ValueError):
        serialization.save({"__metadata__": np.ones(2)}, tmp_path / "x")
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="no_such_dir"):
        serialization.save({"a": np.ones(2)}, tmp_path / "no_such_dir" / "x.safetensors")


def test_failed_save_keeps_the_old_file_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    serialization.save({"x": np.arange(4, dtype=np.float32)}, path)
    before = path.read_bytes()
    # A child process with a 64 KiB file-size limit: writing 4 MiB fails half-way (EFBIG).
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {os.path.abspath(PYTHON_DIR)!r})
        import numpy as np
        from needle import serialization
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        try:
            serialization.save({{"big": np.ones(1 << 20, np.float32)}}, {str(path)!r})
        except RuntimeError as e:
            print("failed:", e)
            sys.exit(3)
        sys.exit(0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "write failed" in proc.stdout and str(path) in proc.stdout
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]
    np.testing.assert_array_equal(serialization.load(path)["x"].numpy(), np.arange(4))


def test_top_level_save_and_load_when_exported(tmp_path):
    if not hasattr(ndl, "save"):
        pytest.skip("needle/__init__.py does not export save/load yet")
    assert ndl.save is serialization.save and ndl.load is serialization.load
    ndl.save({"a": ndl.Tensor([1.0, 2.0])}, tmp_path / "a.safetensors")
    np.testing.assert_array_equal(ndl.load(tmp_path / "a.safetensors")["a"].numpy(), [1.0, 2.0])
