"""Import the one function the user named: ``path/to/file.py:function`` or ``module.path:function``."""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import XentInputError
from .native import is_module_class


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _split(target: str) -> tuple[str, str, bool]:
    """``(where, name, is_file)`` of ``where:name``."""
    if ":" not in target:
        raise XentInputError(
            "name a function as path/to/file.py:function or module.path:function", source=target
        )
    where, _, name = target.rpartition(":")
    if not where or not name:
        raise XentInputError(
            "name a function as path/to/file.py:function or module.path:function", source=target
        )
    return where, name, where.endswith(".py") or os.sep in where or "/" in where


def _check_name(name: str, target: str) -> list[str]:
    parts = name.split(".")
    for part in parts:
        if not part.isidentifier():
            raise XentInputError(f"{name!r} is not a Python name", source=target)
        if part.startswith("__") and part.endswith("__"):
            raise XentInputError(f"{name!r} reaches into Python internals ({part}); name the function itself",
                                 source=target)
    return parts


def precheck(target: str) -> None:
    """Refuse a target that cannot name a function, without importing anything (raises what :func:`load`
    would): the ``where:name`` form, the file, a top-level module that is nowhere to be found, the name."""
    where, name, is_file = _split(target)
    if is_file:
        _check_file(Path(where), target)
    elif where.split(".")[0].isidentifier():
        try:
            with _cwd_on_path():
                missing = importlib.util.find_spec(where.split(".")[0]) is None
        except (ImportError, ValueError):
            missing = False  # let the import say what is wrong
        if missing:
            raise XentInputError(f"no module named {where.split('.')[0]!r} (looked in the current directory "
                                 "and the installed packages)", source=target)
    _check_name(name, target)


def load(target: str) -> Callable[..., Any]:
    """Return the callable named by ``target``; every failure is an :class:`XentInputError`.

    Only that module is imported (and what it imports itself); a module path is
    looked up from the current directory first.
    """
    where, name, is_file = _split(target)
    module = _load_file(Path(where), target) if is_file else _load_module(where, target)
    obj: Any = module
    for part in _check_name(name, target):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise XentInputError(f"{where} has no attribute {part!r}", source=target) from None
        except Exception as exc:  # noqa: BLE001 - a property that raises is the target's own failure
            raise XentInputError(f"reading {part!r} failed: {_one_line(exc)}", source=target) from None
    if not callable(obj):
        raise XentInputError(f"{name} is not callable (it is of type {type(obj).__name__})", source=target)
    refusal = refuse(obj)
    if refusal:
        raise XentInputError(f"{name} {refusal}", source=target)
    fn: Callable[..., Any] = obj
    return fn


def _module_of(obj: Any) -> str:
    """The module a callable was defined in ('' when unknown)."""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or not module:
        module = getattr(type(obj), "__module__", "") or ""
    return module


def _is_standard_library(module: str) -> bool:
    """True for built-in modules and modules whose file lies in Python's own library (not site-packages)."""
    if not module:
        return False
    if module in ("builtins", "__builtin__") or module in sys.builtin_module_names:
        return True
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None) if mod is not None else None
    if not isinstance(path, str):  # frozen or unknown: go by the name
        return module.split(".")[0] in _STDLIB_NAMES
    real = os.path.realpath(path)
    parts = set(Path(real).parts)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return any(real.startswith(root + os.sep) for root in _stdlib_roots())


def _stdlib_roots() -> list[str]:
    paths = sysconfig.get_paths()
    return sorted({os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib") if paths.get(k)})


_STDLIB_NAMES: frozenset[str] = frozenset(getattr(sys, "stdlib_module_names", ()))


def refuse(obj: Any) -> str | None:
    """Why ``obj`` is not run as an implementation, or None.

    Refused: classes (calling one constructs an object, it does not compute a
    loss), except PyTorch ``nn.Module`` classes (verify constructs them with the
    loss options and calls the module), and callables of Python's standard library or built-ins (``os:system``,
    ``shutil:rmtree``, ``builtins:len``: never a loss, and not to be called with
    arbitrary arrays). Anything else callable is run: a ``def``, a lambda, a
    ``functools.partial``, a callable object such as a ``torch.nn.Module``, or a
    compiled extension (pybind11, Cython).
    """
    seen = 0
    while isinstance(obj, functools.partial) and seen < 100:
        obj, seen = obj.func, seen + 1
    if isinstance(obj, type) and not is_module_class(obj):
        return "is a class: calling it would construct an object, not compute a loss; name a function or an instance"
    module = _module_of(obj)
    if _is_standard_library(module):
        shown = getattr(obj, "__qualname__", None) or type(obj).__name__
        return (f"is {module}.{shown} from Python's standard library, not an implementation of a loss; "
                "name your own function")
    return None


def _check_file(path: Path, target: str) -> None:
    if not path.exists():
        raise XentInputError(f"no such file: {path}", source=target)
    if path.is_dir():
        raise XentInputError(f"{path} is a directory, not a Python file", source=target)


def _load_file(path: Path, target: str) -> Any:
    _check_file(path, target)
    mod_name = f"_xent_verify_target_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise XentInputError(f"cannot import {path}", source=target)
    module = importlib.util.module_from_spec(spec)
    parent = str(path.resolve().parent)
    sys.path.insert(0, parent)  # so the file can import its neighbours
    sys.modules[mod_name] = module
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the user's prints must not corrupt our JSON
            spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - the user's import failing is a usage error
        sys.modules.pop(mod_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise XentInputError(f"importing {path} failed: {_one_line(exc)}", source=target) from None
    finally:
        try:
            sys.path.remove(parent)
        except ValueError:
            pass
    return module


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    """The current directory first on ``sys.path`` (module targets are looked up there first)."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            try:
                sys.path.remove(cwd)
            except ValueError:
                pass


def _load_module(name: str, target: str) -> Any:
    try:
        with _cwd_on_path(), contextlib.redirect_stdout(sys.stderr):
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise XentInputError(f"no module named {exc.name or name!r} (looked in the current directory "
                             "and the installed packages)", source=target) from None
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise XentInputError(f"importing {name} failed: {_one_line(exc)}", source=target) from None
