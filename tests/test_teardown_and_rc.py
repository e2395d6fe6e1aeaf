"""The wrapper's own teardown says when it could not look, and ~/.ssh/rc is held.

Both run in a child interpreter: they make the process a subreaper, lower its limits.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from idlewrap.user_rc import EXIT_STOPPED, RC_LIMIT
from tests import infra

SRC = str(infra.REPO)


def run_python(code: str, *, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {SRC!r})\n"
                           + code], capture_output=True, text=True, timeout=timeout, check=False)


def test_teardown_without_file_descriptors_says_so() -> None:
    done = run_python(
        "import os, resource, subprocess\n"
        "from idlewrap import teardown\n"
        "job = subprocess.Popen(['sleep', '100'], stdout=subprocess.DEVNULL)\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (3, hard))\n"  # 0-2 are taken
        "failed = teardown.end_all(lambda: None)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))\n"
        "job.kill()\n"
        "print(failed)\n")
    assert (done.stdout, done.stderr) == ("EMFILE\n", "")


def test_teardown_that_ended_everything_says_nothing() -> None:
    done = run_python(
        "import os, subprocess\n"
        "from idlewrap import teardown\n"
        "job = subprocess.Popen(['sh', '-c', 'trap \"\" HUP TERM; sleep 100'])\n"
        "print(teardown.end_all(lambda: os.waitpid(-1, os.WNOHANG)))\n")
    assert (done.stdout, done.stderr) == ("None\n", "")


def rc_runner(rc: Path) -> subprocess.CompletedProcess[str]:
    return run_python(f"from idlewrap.user_rc import run_user_rc\n"
                      f"raise SystemExit(run_user_rc('/nonexistent.toml', {str(rc)!r}))\n")


def test_user_rc_runs_with_no_terminal(tmp_path: Path) -> None:
    rc = tmp_path / "rc"
    rc.write_text('[ "$(ps -o sid= -p $$ | tr -d " ")" = "$$" ] && echo own-session\n'
                  "(: </dev/tty) 2>/dev/null || echo no-tty\nexit 3\n")
    done = rc_runner(rc)
    assert done.returncode == 3
    assert done.stdout == "own-session\nno-tty\n"


def test_user_rc_is_stopped_with_all_it_started(tmp_path: Path) -> None:
    rc = tmp_path / "rc"
    marker = tmp_path / "left"
    rc.write_text(f"(setsid sh -c 'trap \"\" HUP TERM; sleep 3; touch {marker}' &)\n"
                  "sleep 100\n")
    started = time.monotonic()
    done = rc_runner(rc)
    took = time.monotonic() - started
    assert done.returncode == EXIT_STOPPED
    assert done.stderr == f"idlewrap: ~/.ssh/rc still ran after {RC_LIMIT:g}s: stopped\n"
    assert RC_LIMIT <= took <= RC_LIMIT + 1.5
    time.sleep(3.5)
    assert not marker.exists(), "a job the rc file started outlived it"
