"""Load a user's object named `MODULE:NAME` (`--algo`, `--env pettingzoo:...`).

MODULE is an importable dotted module (`my_pkg.learners`) or the path of a Python file
(`./reinforce.py`, `/abs/dir/envs.py`); NAME may be dotted (`Outer.Inner`). Every failure is a
ValueError with a one-line message that names what was asked for."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def is_file_module(module: str) -> bool:
    return module.endswith(".py") or "/" in module


def import_module(module: str, what: str) -> ModuleType:
    """`what` names the flag in errors, e.g. "--algo my.py:Learner"."""
    if is_file_module(module):
        path = Path(module).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"{what}: no such file {path}")
        # one module name per file path, so the same file imported twice is one module
        name = "drima_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ValueError(f"{what}: {path} is not a Python module")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as exc:  # the user's module failed at import: say why, in one line
            del sys.modules[name]
            raise ValueError(f"{what}: importing {path} failed: {type(exc).__name__}: {exc}") from None
        return mod
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ValueError(f"{what}: no module named {exc.name!r}") from None
    except Exception as exc:
        raise ValueError(f"{what}: importing {module} failed: {type(exc).__name__}: {exc}") from None


def load_object(module: str, name: str, what: str) -> Any:
    obj: Any = import_module(module, what)
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{what}: {module} has no {name!r}") from None
    return obj


def absolute_module(module: str) -> str:
    """A .py file's absolute path, so that processes started elsewhere find it; a dotted module
    name as it is."""
    return str(Path(module).expanduser().resolve()) if is_file_module(module) else module


def absolute_reference(ref: str) -> str:
    """`./file.py:NAME` -> `/abs/file.py:NAME`; dotted module names are left as they are."""
    module, sep, name = ref.rpartition(":")
    return f"{absolute_module(module)}:{name}" if sep and module else ref
