"""From a config's optimizer name to a class and its capabilities.

A name is looked up, in this order, among the built-in optimizers, the entry points that
installed packages register under `adamrepro.optimizers`, and finally as an import path:
`package.module:Class` or `package.module.Class`. A name that resolves to anything but a
`torch.optim.Optimizer` subclass is refused with a ValueError that says what to write.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

import torch

from adamrepro.optim.capabilities import Capabilities, capabilities_of
from adamrepro.optim.dynamo_deferred import defer_dynamo_import, import_dynamo_for
from adamrepro.wording import did_you_mean

ENTRY_POINT_GROUP = "adamrepro.optimizers"


@dataclass(frozen=True)
class Resolved:
    name: str
    cls: type
    capabilities: Capabilities
    builtin: bool


@cache
def registered() -> dict[str, object]:
    """Entry points of installed packages: name -> entry point (loaded on use)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


@cache
def ambiguous() -> dict[str, list[str]]:
    """Entry-point names that installed packages register for different classes: name ->
    each registration (`package: module:Class`). Which one is used would depend on the
    order of sys.path, so none is."""
    seen: dict[str, dict[str, str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        package = getattr(getattr(ep, "dist", None), "name", None) or "a package"
        seen.setdefault(ep.name, {}).setdefault(ep.value, f"{package}: {ep.value}")
    return {name: list(values.values()) for name, values in seen.items() if len(values) > 1}


def shadowed(builtins: dict[str, type]) -> list[str]:
    """Entry points named like a built-in optimizer, which wins: they are never used."""
    return sorted(set(registered()) & set(builtins))


def _import_fix(module_name: str, err: Exception) -> str:
    """What to do when importing `module_name` raised `err`: find it, install what it
    imports, or fix its code (installing it again would not help)."""
    if isinstance(err, ModuleNotFoundError) and err.name:
        if f"{module_name}.".startswith(f"{err.name}."):  # it, or a package above it
            return "install it or put it on PYTHONPATH"
        return f"install {err.name}, which it imports"
    return "the error is in that module's code: fix it there"


def _import(path: str) -> object:
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"optimizer {path!r} is neither a built-in name nor an import path "
                         f"like 'torch.optim.SGD' or 'mypkg.module:MyOptimizer'")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any failure while importing a user's module is theirs to fix
        raise ValueError(f"optimizer {path!r}: cannot import module {module_name!r} "
                         f"({type(err).__name__}: {err}); {_import_fix(module_name, err)}"
                         ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        # the module's Optimizer classes, nearest first: a misspelt class is the usual case
        classes = [name for name, value in vars(module).items() if isinstance(value, type)
                   and issubclass(value, torch.optim.Optimizer)]
        hint = did_you_mean(attr, classes)
        hint = f"; {hint}" if hint else ""
        raise ValueError(f"optimizer {path!r}: module {module_name!r} has no attribute "
                         f"{attr!r}{hint}") from None


def resolve(name: str, builtins: dict[str, type], closure: bool | None = None) -> Resolved:
    # every optimizer a command builds is resolved first: none of them imports dynamo
    defer_dynamo_import()
    if name in builtins:
        cls = builtins[name]
        return Resolved(name, cls, capabilities_of(cls, closure), True)
    if name in ambiguous():
        raise ValueError(f"optimizer {name!r}: installed packages register entry points of "
                         f"that name for different classes ({'; '.join(ambiguous()[name])}); "
                         f"uninstall all but one, or name the class by its import path")
    if name in registered():
        try:
            target = registered()[name].load()
        except Exception as err:
            raise ValueError(f"optimizer {name!r}: its entry point in group "
                             f"{ENTRY_POINT_GROUP!r} fails to load ({err})") from None
    elif "." in name or ":" in name:
        target = _import(name)
    else:
        known = sorted({*builtins, *registered()})
        hint = did_you_mean(name, known, n=3)
        hint += " " if hint else ""
        raise ValueError(f"unknown optimizer {name!r}; {hint}known: {', '.join(known)}, "
                         f"an import path such as 'torch.optim.SGD', or an entry point of "
                         f"group {ENTRY_POINT_GROUP!r}")
    if not (isinstance(target, type) and issubclass(target, torch.optim.Optimizer)):
        raise ValueError(f"optimizer {name!r} names {target!r}, which is not a "
                         f"torch.optim.Optimizer subclass")
    import_dynamo_for(target)
    return Resolved(name, target, capabilities_of(target, closure), False)


def outside_classes(cls: type) -> list[type]:
    """`cls` and the classes it inherits from, but torch's, adamrepro's and Python's own: a
    user's code, in method resolution order."""
    return [klass for klass in cls.__mro__
            if klass.__module__.partition(".")[0] not in ("torch", "adamrepro", "builtins")]


def defining_files(cls: type) -> list[Path]:
    """The source files of `outside_classes(cls)` (those that have one), each once."""
    files = []
    for klass in outside_classes(cls):
        try:
            source = inspect.getsourcefile(klass)
        except TypeError:  # a class defined in C, or in an interactive session
            source = None
        if source is not None and Path(source).resolve() not in files:
            files.append(Path(source).resolve())
    return files


def user_code(cls: type) -> Callable[[Path], bool]:
    """Whether a file is the code of a user's optimizer class: the files that define it and
    the classes it inherits from outside torch and adamrepro, and their packages, so that a
    step inherited from another of their files, or a helper module of their package, is
    theirs too."""
    roots = set(defining_files(cls))
    for klass in outside_classes(cls):
        top = klass.__module__.partition(".")[0]
        file = getattr(sys.modules.get(top), "__file__", None)  # None: a namespace package
        if file is not None and Path(file).name == "__init__.py":
            roots.add(Path(file).resolve().parent)
    return lambda file: any(file == root or (root.is_dir() and file.is_relative_to(root))
                            for root in roots)
