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


_MMAPPED = """
import ctypes
from fastconv.kernels import keep_freed_memory
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if {apply}:
    assert keep_freed_memory() is True
p = libc.malloc(64 << 20)
print(libc.mallinfo2().hblkhd >= 64 << 20)
libc.free(p)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
@pytest.mark.parametrize("apply, mmapped", [(False, "True"), (True, "False")])
def test_settings_reach_glibc(apply, mmapped):
    # mallinfo2's hblkhd counts the bytes in mmapped blocks: by default a
    # 64 MiB block is one; with the setting it comes from the heap. Each case
    # runs in a fresh process, so the test session keeps the default allocator.
    assert _run(_MMAPPED.format(apply=apply)) == mmapped


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
