"""The environment is the one requirements.lock pins, and the lock still covers pyproject.toml.

`make install` installs the lock hash-checked and without resolving; these tests catch the two
ways that can drift: a package installed at another version than the lock's (an install that
bypassed the lock), and a dependency range edited in pyproject.toml without `make lock`.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# "name==version ; marker \" opens each entry; hashes and "# via" comments follow.
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked_for_this_interpreter() -> dict[str, Version]:
    """The lock's pins whose markers hold here (a universal lock lists some names twice)."""
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = _PIN.match(line)
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker is None or Marker(marker).evaluate():
            pins[canonicalize_name(name)] = Version(version)
    return pins


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        declared += [Requirement(r) for r in extra if not r.startswith("aiservice[")]
    return declared


def test_every_locked_package_is_installed_at_its_locked_version():
    locked = locked_for_this_interpreter()
    assert {"openai", "fastapi", "pydantic", "sqlalchemy", "llama-cpp-python"} <= locked.keys()
    installed = {name: _installed_version(name) for name in locked}
    assert installed == locked


def test_the_lock_satisfies_every_range_in_pyproject():
    locked = locked_for_this_interpreter()
    for requirement in declared_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is declared but not locked: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"the lock pins {name} {locked[name]}, outside {requirement}: run `make lock`"
        )


def test_the_openai_sdk_is_capped_below_its_next_major():
    (openai,) = [r for r in declared_requirements() if r.name == "openai"]
    assert not openai.specifier.contains("4.0.0")
    assert openai.specifier.contains(str(locked_for_this_interpreter()["openai"]))


def _installed_version(name: str) -> Version | None:
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None
