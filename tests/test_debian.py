"""debian/: the package's version is the program's (tests/package/ tests the package itself)."""

import re

import idlewrap
from tests import infra


def test_the_package_version_is_the_program_version() -> None:
    top = (infra.REPO / "debian/changelog").read_text().splitlines()[0]
    entry = re.fullmatch(r"idlewrap \((?P<upstream>[^-]+)-(?P<revision>\d+)\) \S+; urgency=\w+",
                         top)
    assert entry, top
    assert entry["upstream"] == idlewrap.__version__
