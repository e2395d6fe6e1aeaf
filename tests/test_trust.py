"""trust.read_trusted: root-owned file and directories only, symlinks followed safely."""

import os
import tempfile
from pathlib import Path

import pytest

from idlewrap.trust import MAX_BYTES, TrustError, read_trusted

OTHER_UID = 1001


def _file(path: Path, text: str = "x = 1\n", *, uid: int = 0, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chown(path, uid, 0)
    os.chmod(path, mode)
    return path


def _refused(path: Path | str, offender: Path | str, reason: str) -> None:
    with pytest.raises(TrustError) as info:
        read_trusted(path)
    assert info.value.path == str(offender)
    assert reason in info.value.reason
    assert str(info.value) == f"{offender} is {info.value.reason}"


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError):
        read_trusted("/nonexistent-idlewrap-test/policy.toml")


@pytest.mark.root
def test_root_owned_file(trusted_dir: Path) -> None:
    assert read_trusted(_file(trusted_dir / "p.toml", "a = 1\n")) == b"a = 1\n"


@pytest.mark.root
def test_relative_path(trusted_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _file(trusted_dir / "p.toml")
    (trusted_dir / "sub").mkdir(mode=0o755)
    monkeypatch.chdir(trusted_dir / "sub")
    assert read_trusted("../p.toml") == b"x = 1\n"


@pytest.mark.root
def test_file_owned_by_another_uid(trusted_dir: Path) -> None:
    path = _file(trusted_dir / "p.toml", uid=OTHER_UID)
    _refused(path, path, f"owned by uid {OTHER_UID}")


@pytest.mark.root
@pytest.mark.parametrize(("mode", "reason"), [(0o664, "writable by group"),
                                              (0o646, "writable by others")])
def test_writable_file(trusted_dir: Path, mode: int, reason: str) -> None:
    path = _file(trusted_dir / "p.toml", mode=mode)
    _refused(path, path, reason)


@pytest.mark.root
@pytest.mark.parametrize(("uid", "mode", "reason"), [
    (0, 0o775, "writable by group"), (0, 0o757, "writable by others"),
    (0, 0o1777, "writable by group and others"), (OTHER_UID, 0o755, f"owned by uid {OTHER_UID}"),
])
def test_untrusted_parent_directory(trusted_dir: Path, uid: int, mode: int, reason: str) -> None:
    parent = trusted_dir / "conf"
    parent.mkdir()
    os.chown(parent, uid, 0)
    os.chmod(parent, mode)
    path = _file(parent / "p.toml")
    _refused(path, parent, reason)


@pytest.mark.root
def test_symlink_to_trusted_file(trusted_dir: Path) -> None:
    _file(trusted_dir / "real.toml", "a = 2\n")
    (trusted_dir / "sub").mkdir(mode=0o755)
    (trusted_dir / "sub" / "link.toml").symlink_to("../real.toml")
    assert read_trusted(trusted_dir / "sub" / "link.toml") == b"a = 2\n"


@pytest.mark.root
def test_symlink_to_file_in_world_writable_directory(trusted_dir: Path) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        target = _file(Path(scratch) / "evil.toml")
        os.chmod(scratch, 0o755)
        (trusted_dir / "p.toml").symlink_to(target)
        _refused(trusted_dir / "p.toml", "/tmp", "writable by group and others")


@pytest.mark.root
def test_symlink_to_file_owned_by_another_uid(trusted_dir: Path) -> None:
    target = _file(trusted_dir / "evil.toml", uid=OTHER_UID)
    (trusted_dir / "p.toml").symlink_to("evil.toml")
    _refused(trusted_dir / "p.toml", target, f"owned by uid {OTHER_UID}")


@pytest.mark.root
def test_symlink_in_writable_directory(trusted_dir: Path) -> None:
    """The link could be swapped: its directory counts even if the target is fine."""
    target = _file(trusted_dir / "real.toml")
    links = trusted_dir / "links"
    links.mkdir()
    os.chmod(links, 0o757)
    (links / "p.toml").symlink_to(target)
    _refused(links / "p.toml", links, "writable by others")


@pytest.mark.root
def test_symlink_loop(trusted_dir: Path) -> None:
    (trusted_dir / "a").symlink_to("b")
    (trusted_dir / "b").symlink_to("a")
    _refused(trusted_dir / "a", trusted_dir / "a", "too many symbolic links")


@pytest.mark.root
def test_directory_is_not_a_file(trusted_dir: Path) -> None:
    (trusted_dir / "sub").mkdir()
    _refused(trusted_dir, trusted_dir, "a directory, not a regular file")
    _refused(f"{trusted_dir}/.", trusted_dir, "a directory")
    _refused(f"{trusted_dir}/sub/..", f"{trusted_dir}/sub/..", "a directory")


@pytest.mark.root
def test_fifo_is_refused_without_blocking(trusted_dir: Path) -> None:
    os.mkfifo(trusted_dir / "p.toml", 0o644)
    _refused(trusted_dir / "p.toml", trusted_dir / "p.toml", "a special file")


@pytest.mark.root
def test_too_large(trusted_dir: Path) -> None:
    path = _file(trusted_dir / "p.toml", "#" * (MAX_BYTES + 1))
    _refused(path, path, "larger than")
    assert len(read_trusted(_file(path, "#" * MAX_BYTES))) == MAX_BYTES
