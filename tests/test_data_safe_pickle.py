"""The restricted unpickler of the MMSA / MulT readers: data loads, code does not run."""

from __future__ import annotations

import os
import pickle
import pickletools
import struct
from pathlib import Path

import numpy as np
import pytest

from lightning_kd.checkpoint import DataFormatError
from lightning_kd.data.formats.common import load_pickle
from lightning_kd.data.formats.mmsa import read_mmsa
from lightning_kd.data.formats.mult import read_mult
from lightning_kd.data.formats.safe_pickle import RefusedGlobalError, restricted_loads


class _RunsShell:
    """Unpickling this calls os.system(command): what a hostile data file does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _hostile(tmp_path: Path, marker: Path) -> object:
    return _RunsShell(f"touch {marker}")


def _dump(obj: object, path: Path, protocol: int = 4) -> Path:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def _load_plain(path: Path) -> dict:
    with path.open("rb") as f:
        return pickle.load(f)


# -- code does not run ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["top", "split", "key", "list"])
def test_mmsa_pickle_that_runs_a_command_is_refused_unrun(tmp_path: Path, tiny_mmsa_aligned: Path, where: str) -> None:
    marker = tmp_path / "ran"
    data = _load_plain(tiny_mmsa_aligned)
    bomb = _hostile(tmp_path, marker)
    if where == "top":
        data = bomb
    elif where == "split":
        data["valid"] = bomb
    elif where == "key":
        data["test"]["extra"] = bomb
    else:
        data["train"]["annotations"][3] = bomb
    path = _dump(data, tmp_path / "aligned_50.pkl")
    with pytest.raises(DataFormatError) as err:
        read_mmsa(path)
    msg = str(err.value)
    assert not marker.exists()  # os.system was never called
    assert "\n" not in msg and str(path) in msg and f"'{os.system.__module__}.system'" in msg, msg
    assert "refused" in msg and "Fix:" in msg


def test_mult_pickle_that_runs_a_command_is_refused_unrun(tmp_path: Path, tiny_mult_iemocap: Path) -> None:
    marker = tmp_path / "ran"
    data = _load_plain(tiny_mult_iemocap)
    data["train"]["id"] = _hostile(tmp_path, marker)
    path = _dump(data, tmp_path / "iemocap_data.pkl", protocol=2)
    with pytest.raises(DataFormatError) as err:
        read_mult(path)
    assert not marker.exists()
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "system'" in msg, msg


def test_the_same_file_runs_the_command_with_plain_pickle(tmp_path: Path) -> None:
    """The hostile object is real: plain pickle.load runs it (so the tests above test the filter)."""
    marker = tmp_path / "ran"
    path = _dump({"train": _hostile(tmp_path, marker)}, tmp_path / "x.pkl")
    _load_plain(path)
    assert marker.exists()


@pytest.mark.parametrize(("module", "name"), [("builtins", "eval"), ("builtins", "getattr"), ("subprocess", "Popen"),
                                              ("numpy", "load"), ("numpy.testing", "assert_equal"),
                                              ("copyreg", "_reconstructor"), ("torch", "load")])
def test_any_other_global_is_refused(module: str, name: str) -> None:
    payload = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."
    with pytest.raises(RefusedGlobalError) as err:
        restricted_loads(payload)
    assert err.value.qualname == f"{module}.{name}"


def test_codecs_encode_only_to_latin1() -> None:
    ok = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00latin1\x86R."
    assert restricted_loads(ok) == b"abc"
    bad = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R."
    with pytest.raises(pickle.UnpicklingError, match="latin-1"):
        restricted_loads(bad)


def test_object_array_elements_go_through_the_filter(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = "fine", _hostile(tmp_path, marker)
    with pytest.raises(RefusedGlobalError):
        restricted_loads(pickle.dumps({"train": arr}, protocol=4))
    assert not marker.exists()


# -- data loads ------------------------------------------------------------------------------------------------------
def _sample() -> dict:
    return {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5,
        "f64": np.linspace(-1, 1, 7),
        "i64": np.arange(5, dtype=np.int64),
        "bool": np.array([True, False]),
        "str": np.array(["ab", "cde"]),
        "bytes": np.array([b"x", b"yz"]),
        "obj": np.array(["a", 3, None], dtype=object),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "scalars": [np.float64(1.5), np.int64(7), np.float32(-2.0), np.bool_(True)],
        "plain": {"list": [1, 2.5, "s", b"b", None, True], "tuple": (1, (2, 3)), "set": {1, 2},
                  "frozen": frozenset({3}), "ba": bytearray(b"q")},
        "dtype": np.dtype("<f4"),
    }


def _assert_same(a: object, b: object) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        assert a.tolist() == b.tolist()
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_arrays_scalars_and_containers_load(protocol: int) -> None:
    data = _sample()
    _assert_same(restricted_loads(pickle.dumps(data, protocol=protocol)), data)


def _strip_frames(data: bytes) -> bytes:
    """Remove protocol-4 FRAME opcodes (optional), so strings inside may change length."""
    out, last = bytearray(), 0
    for op, _, pos in pickletools.genops(data):
        if op.name == "FRAME":
            out += data[last:pos]
            last = pos + 9  # opcode + 8-byte length
    return bytes(out + data[last:])


def _as_numpy1(data: bytes, protocol: int) -> bytes:
    """The pickle numpy 1.x writes: its arrays name ``numpy.core`` where numpy 2.x names ``numpy._core``."""
    if protocol == 2:  # GLOBAL opcodes: "c<module>\\n<name>\\n"
        out = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    else:  # SHORT_BINUNICODE module names before STACK_GLOBAL
        out = _strip_frames(data)
        for new in (b"numpy.core.multiarray", b"numpy.core.numeric"):
            old = new.replace(b"numpy.core", b"numpy._core")
            out = out.replace(b"\x8c" + struct.pack("B", len(old)) + old, b"\x8c" + struct.pack("B", len(new)) + new)
    assert b"numpy._core" not in out and b"numpy.core" in out
    return out


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickles_written_by_numpy_1_load(protocol: int) -> None:
    data = _sample()
    _assert_same(restricted_loads(_as_numpy1(pickle.dumps(data, protocol=protocol), protocol)), data)


def _py2_float32_array(values: list[float]) -> bytes:
    """A pickle as Python 2 + numpy 1.x write it (protocol 2): the array bytes are a Python 2 ``str``."""
    raw = np.asarray(values, dtype="<f4").tobytes()

    def s(b: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING (a Python 2 str)
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b

    return (b"\x80\x02}q\x00" + s(b"train")
            + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
            + b"(K\x01" + bytes([0x4B, len(values)]) + b"\x85cnumpy\ndtype\n" + s(b"f4") + b"K\x00K\x01\x87R"
            + b"(K\x03" + s(b"<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + s(raw) + b"tbs.")


def test_python2_numpy_pickle_loads_with_latin1_retry(tmp_path: Path) -> None:
    values = [1.0, -2.5, 3.25]  # bytes above 0x7f: ASCII decoding fails, latin1 is retried
    path = tmp_path / "py2.pkl"
    path.write_bytes(_py2_float32_array(values))
    got = load_pickle(path, "not found", "fix")
    assert got["train"].dtype == np.float32 and got["train"].tolist() == values
    with path.open("rb") as f:  # plain pickle agrees (the hand-written stream is what numpy reads)
        assert pickle.load(f, encoding="latin1")["train"].tolist() == values
    assert load_pickle(path, "not found", "fix", encodings=("latin1",))["train"].tolist() == values  # DEAP style


def test_readers_still_read_generated_files_at_every_protocol(tmp_path: Path, tiny_mmsa_unaligned: Path,
                                                              tiny_mult_iemocap: Path) -> None:
    ref_mmsa, ref_mult = read_mmsa(tiny_mmsa_unaligned), read_mult(tiny_mult_iemocap)
    for protocol in (2, 5):
        p = _dump(_load_plain(tiny_mmsa_unaligned), tmp_path / f"mmsa{protocol}.pkl", protocol)
        q = _dump(_load_plain(tiny_mult_iemocap), tmp_path / f"mult{protocol}.pkl", protocol)
        got_mmsa, got_mult = read_mmsa(p), read_mult(q)
        for ref, got in ((ref_mmsa, got_mmsa), (ref_mult, got_mult)):
            for s in ref:
                assert ref[s].ids == got[s].ids
                assert (ref[s].target == got[s].target).all()
                for k, t in ref[s].inputs.items():
                    assert (t == got[s].inputs[k]).all()
