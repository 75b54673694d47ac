import subprocess
import sys
import types

import pytest

from fastconv.kernels import allocator, keep_freed_memory


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "1GB", None])
def test_bad_max_bytes_names_the_argument(bad):
    with pytest.raises(
        ValueError,
        match=f"max_bytes must be a positive int, received max_bytes={bad!r}",
    ):
        keep_freed_memory(bad)


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_settings_reach_glibc():
    # malloc_info reports how many blocks are mmapped: with the setting, a
    # 64 MiB block is served from the heap instead (run in a fresh process, so
    # the rest of the test session keeps the default allocator).
    code = """
import ctypes, sys
from fastconv.kernels import keep_freed_memory
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[-1] == "on":
    assert keep_freed_memory() is True
p = libc.malloc(64 << 20)
print(libc.mallinfo2().hblkhd >= 64 << 20)
libc.free(p)
"""
    assert _run(code + "\n# off") == "True"
    on = code.replace('sys.argv[-1] == "on"', "True")
    assert _run(on) == "False"


def test_no_mallopt_warns_and_changes_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_libc", lambda: None)
    with pytest.warns(UserWarning, match="no mallopt"):
        assert keep_freed_memory() is False


def test_refused_setting_warns(monkeypatch):
    def mallopt(param, value):
        return 0 if param == allocator._M_MMAP_THRESHOLD else 1

    monkeypatch.setattr(
        allocator, "_libc", lambda: types.SimpleNamespace(mallopt=mallopt)
    )
    with pytest.warns(UserWarning, match="mmap threshold accepted: False"):
        assert keep_freed_memory(1 << 20) is False
