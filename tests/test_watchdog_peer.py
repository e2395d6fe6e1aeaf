"""What the watchdog takes for a wrapper, from /proc (no root: our own children serve)."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from idlewrap.settings import DEFAULT_CONFIG
from idlewrap.watchdog import peer, procfs

CONFIG = "/etc/idlewrap/test.toml"
HOME = "/home/alice"


def started_as_wrapper(argv: list[str], kind: str = "session") -> str | None:
    return peer._not_started_as_wrapper(argv, kind, HOME, CONFIG)


@pytest.mark.parametrize("argv", [
    ["python3", "-I", "-m", "idlewrap", "--config", CONFIG],
    ["python3", "-Im", "idlewrap", f"--config={CONFIG}"],
])
def test_the_forcecommand_wrapper(argv: list[str]) -> None:
    assert started_as_wrapper(argv) is None


@pytest.mark.parametrize(("argv", "why"), [
    (["python3", "-m", "idlewrap", "--config", CONFIG], "not the wrapper's command line"),
    (["python3", "-I", "-m", "idlewrap", "demo"], "not the wrapper's command line"),
    (["python3", "-I", "-m", "idlewrap.pam_hook"], "not the wrapper's command line"),
    (["python3", "-I", "-m", "idlewrap"], f"reads the policy {DEFAULT_CONFIG}, not {CONFIG}"),
    (["python3", "-I", "-m", "idlewrap", "--config", "/tmp/mine.toml"], "reads the policy"),
    (["python3", "-I", "-c", "import idlewrap"], "not the wrapper's command line"),
    (["bash", "-i"], "not the wrapper's command line"),
])
def test_what_is_not_the_wrapper(argv: list[str], why: str) -> None:
    found = started_as_wrapper(argv)
    assert found is not None and found.startswith(why), found


def test_an_rc_runner_must_be_the_launcher() -> None:
    argv = ["python3", "-I", "-m", "idlewrap", "--config", CONFIG]
    assert started_as_wrapper(argv, kind="rc") is not None


PTRACE_SEIZE = 0x4206


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "100"])
    yield process
    process.kill()
    process.wait()


def facts(pid: int) -> peer.Connection:
    return peer.Connection(os.getuid(), HOME, "/bin/sh", procfs.exe_of(os.getpid()),
                           lambda _: True)


def test_a_traced_process_is_refused(child: subprocess.Popen[bytes]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
    if libc.ptrace(PTRACE_SEIZE, child.pid, None, None) != 0:
        pytest.skip(f"cannot ptrace here: {os.strerror(ctypes.get_errno())}")
    expected = peer.Expected(procfs.file_id(sys.executable), CONFIG)
    why = peer.refusal(child.pid, os.getuid(), "session", facts(child.pid), expected)
    assert why == f"traced by pid {os.getpid()}"


def test_a_process_of_another_uid_is_refused(child: subprocess.Popen[bytes]) -> None:
    expected = peer.Expected(procfs.file_id(sys.executable), CONFIG)
    why = peer.refusal(child.pid, os.getuid() + 1, "session", facts(child.pid), expected)
    assert why == f"uid {os.getuid() + 1} is not the connection's ({os.getuid()})"


def test_another_program_is_refused(child: subprocess.Popen[bytes]) -> None:
    expected = peer.Expected(procfs.file_id(sys.executable), CONFIG)
    why = peer.refusal(child.pid, os.getuid(), "session", facts(child.pid), expected)
    assert why is not None and why.endswith("not idlewrap's interpreter"), why


def test_a_preloaded_library_others_could_write_shows(tmp_path: Path) -> None:
    """What LD_PRELOAD leaves in the maps, even once the file is deleted."""
    library = next(p for p in ("/lib/x86_64-linux-gnu/libutil.so.1",
                               "/usr/lib/x86_64-linux-gnu/libutil.so.1") if os.path.exists(p))
    preload = tmp_path / "libmine.so"
    shutil.copy(library, preload)
    preload.chmod(0o666)
    process = subprocess.Popen(["sleep", "100"], env={"LD_PRELOAD": str(preload)})
    try:
        for _ in range(100):
            if str(preload) in Path(f"/proc/{process.pid}/maps").read_text():
                break
            os.sched_yield()
        preload.unlink()
        assert procfs.untrusted_mapping(process.pid) == f"{preload} (deleted)"
    finally:
        process.kill()
        process.wait()


def test_an_ordinary_program_maps_only_roots_files(child: subprocess.Popen[bytes]) -> None:
    if os.stat("/usr/bin/sleep").st_uid != 0:
        pytest.skip("this system's binaries are not root's")
    assert procfs.untrusted_mapping(child.pid) is None
