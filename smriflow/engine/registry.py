"""Find interfaces and workflows by the names YAML files use.

* Interfaces: every class listed in the ``__all__`` of a :mod:`smriflow.interfaces` submodule is registered
  under its class name (no hand-kept table to forget). Any other nipype interface is reachable by dotted
  path, ``package.module.ClassName``.
* Workflows: a packaged YAML (``workflows/<name>.yml``) by its name, a YAML path relative to the file that
  uses it, or a dotted path to a Python ``init_*_wf`` factory.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from functools import cache
from pathlib import Path

from nipype.interfaces.base import BaseInterface

from smriflow.config.resources import packaged_dir


class UnresolvedReference(LookupError):
    """A name in a YAML file does not resolve; the message is ready for the user."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint


@cache
def interface_registry() -> dict[str, type[BaseInterface]]:
    """Map short names to the interface classes of :mod:`smriflow.interfaces`."""
    import smriflow.interfaces as package

    found: dict[str, type[BaseInterface]] = {}
    for module_info in pkgutil.iter_modules(package.__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, BaseInterface):
                if name in found and found[name] is not obj:
                    raise RuntimeError(f"interface name {name!r} is defined twice: {found[name]} and {obj}")
                found[name] = obj
    return found


def resolve_interface(name: str) -> type[BaseInterface]:
    """Return the interface class for a registered short name or a dotted path.

    Raises
    ------
    UnresolvedReference
        With a did-you-mean hint over the registered names.
    """
    registry = interface_registry()
    if name in registry:
        return registry[name]
    if "." in name:
        obj = _import_dotted(name)
        if inspect.isclass(obj) and issubclass(obj, BaseInterface):
            return obj
        raise UnresolvedReference(f"'{name}' is not a nipype interface class")
    from smriflow.config.errors import did_you_mean

    raise UnresolvedReference(
        f"unknown interface '{name}'",
        did_you_mean(name, registry, list_all=False) or "Run `smriflow list` to see the interfaces.",
    )


def _import_dotted(path: str):
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnresolvedReference(f"cannot import module '{module_name}' ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UnresolvedReference(f"module '{module_name}' has no attribute '{attr}'") from None


def packaged_workflows() -> dict[str, Path]:
    """Names and paths of the YAML workflows shipped with smriflow."""
    folder = packaged_dir("workflows")
    return {path.stem: path for path in sorted(folder.glob("*.yml"))}


def resolve_workflow(ref: str, *, relative_to: Path | None = None) -> Path | Callable:
    """Return the YAML path or the Python factory that a ``workflow:`` value names.

    Order: an existing YAML path (relative to the referring file), a packaged YAML name, a dotted path to
    a Python factory.
    """
    if ref.endswith((".yml", ".yaml")):
        path = Path(ref)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to.parent / path
        if path.is_file():
            return path
        raise UnresolvedReference(f"workflow file '{ref}' not found")
    packaged = packaged_workflows()
    if ref in packaged:
        return packaged[ref]
    if "." in ref:
        obj = _import_dotted(ref)
        if callable(obj):
            return obj
        raise UnresolvedReference(f"'{ref}' is not a workflow factory")
    from smriflow.config.errors import did_you_mean

    raise UnresolvedReference(
        f"unknown workflow '{ref}'",
        did_you_mean(ref, packaged, list_all=False) or "Run `smriflow list` to see the workflows.",
    )
