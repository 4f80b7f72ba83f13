"""Print pip constraints pinning smriflow's run-time dependencies, and theirs, to the versions installed here.

``containers/ci.sh`` writes them into its copy of the build context as ``containers/constraints.txt``, so
that the image gets the versions of the environment whose run it compares with the container's (same
versions, same bytes), and so that the image's dependency layer is rebuilt when one of those versions
changes, not when an unrelated package of that environment does (test tools, for instance)::

    python containers/pins.py [pyproject.toml] > constraints.txt

A dependency that is not installed is an error naming it.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def installed_closure(requirements: list[str]) -> dict[str, str]:
    """Installed version of every distribution ``requirements`` need, directly or not (markers applied)."""
    versions: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(line), frozenset[str]()) for line in requirements]
    while todo:
        requirement, parent_extras = todo.pop()
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in parent_extras | {""}
        ):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"pins.py: {requirement.name} ({requirement}) is not installed") from None
        versions[name] = distribution.version
        todo += [(Requirement(line), frozenset(requirement.extras)) for line in distribution.requires or []]
    return dict(sorted(versions.items()))


def main(argv: list[str]) -> int:
    pyproject = Path(argv[0] if argv else Path(__file__).resolve().parents[1] / "pyproject.toml")
    project = tomllib.loads(pyproject.read_text())["project"]
    print(f"# versions installed where containers/pins.py ran, for {project['name']}'s dependencies")
    for name, version in installed_closure(project["dependencies"]).items():
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
