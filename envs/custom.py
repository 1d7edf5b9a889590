"""Your own environment, named by where it lives: ``module:attribute`` or ``path/to/file.py:attribute``.

    >>> env = envs.make("examples/point_mass.py:make")          # a file, relative to the working directory
    >>> env = envs.make("my_package.tasks:MyBraxEnv", backend="positional")   # an importable module

The attribute may be

- a Brax environment (``brax.envs.base.Env``, e.g. a ``PipelineEnv``), a class
  of one, or a function returning one; Brax options (``episode_length``,
  ``action_repeat``) apply as for the shipped Brax envs, and ``backend`` is
  passed to the class or function (``backend=...``) when given;
- a gymnax ``Environment``, a class of one, or a function returning one (or
  returning ``(env, params)`` as ``gymnax.make`` does);
- the name of an environment that importing the module registered with
  ``brax.envs.register_environment``.

Importing a module by name also looks in the current working directory, as
``python -m`` does. Every mistake (no such file or module, no such attribute,
an object of the wrong type, a factory that raises) is a
:class:`CustomEnvironmentError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

SEPARATOR = ":"
KINDS = ("brax", "gymnax")
WANTED = "a Brax Env (e.g. a PipelineEnv), a gymnax Environment, a class of either, or a function returning one"


class UnknownEnvironmentError(ValueError):
    """An environment name that :func:`envs.make` cannot build; the message lists the valid names."""


class CustomEnvironmentError(UnknownEnvironmentError):
    """A ``module:attribute`` environment that cannot be loaded; the message says why, in one line."""


def is_custom(name: str) -> bool:
    """Whether ``name`` names a user's environment (``module:attribute`` or ``file.py:attribute``)."""
    return SEPARATOR in name


@dataclasses.dataclass(frozen=True)
class CustomEnv:
    """A resolved user environment: its kind, how to build it, and one instance built with no options."""

    spec: str
    kind: str  # "brax" or "gymnax"
    build: Callable[..., Any] | None  # factory(**options); None for an instance given as is
    instance: Any  # brax Env, or (gymnax Environment, params)

    def make(self, **options: Any) -> Any:
        """The env (brax) or ``(env, params)`` (gymnax), built with ``options`` when there are any."""
        if not options:
            return self.instance
        if self.build is None:
            raise CustomEnvironmentError(
                f"{self.spec} is an environment instance, so it takes no options "
                f"(got {', '.join(sorted(options))}); point --env at a class or function to pass them"
            )
        return _classify(self.spec, _call(self.spec, self.build, options))[1]


def split(spec: str) -> tuple[str, str]:
    where, _, attribute = spec.rpartition(SEPARATOR)
    if not where or not attribute:
        raise CustomEnvironmentError(f"bad environment {spec!r}: write module:attribute or path/to/file.py:attribute")
    return where, attribute


def _is_path(where: str) -> bool:
    return where.endswith(".py") or os.sep in where or "/" in where


def import_module(where: str):
    """Import a dotted module name (the working directory first on the path) or a ``.py`` file."""
    _brax_base()  # once, quietly: MuJoCo prints "Failed to import warp" lines when brax is first imported
    if _is_path(where):
        path = Path(where).expanduser()
        if not path.is_file():
            raise CustomEnvironmentError(f"no such file: {where} (in --env {where}:...)")
        name = "discovery_user_env_" + "".join(c if c.isalnum() else "_" for c in str(path.resolve()))
        if name in sys.modules:
            return sys.modules[name]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise CustomEnvironmentError(f"cannot import {where}: not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise CustomEnvironmentError(
                f"importing {where} failed: {type(error).__name__}: {_one_line(error)}"
            ) from None
        return module
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as error:
        if error.name and (where == error.name or where.startswith(error.name + ".")):
            raise CustomEnvironmentError(
                f"no module named {error.name!r} (in --env {where}:...; a file needs a path "
                f"ending in .py, e.g. ./{where.replace('.', '/')}.py:...)"
            ) from None
        raise CustomEnvironmentError(f"importing {where} failed: {type(error).__name__}: {_one_line(error)}") from None
    except Exception as error:
        raise CustomEnvironmentError(f"importing {where} failed: {type(error).__name__}: {_one_line(error)}") from None


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _brax_base():
    from envs.adapters import _import_brax_envs

    _import_brax_envs()
    from brax.envs import base

    return base


def _gymnax_base():
    from gymnax.environments import environment

    return environment


def registered_brax(name: str) -> bool:
    brax_envs = sys.modules.get("brax.envs")
    return brax_envs is not None and name in getattr(brax_envs, "_envs", {})


def _classify(spec: str, obj: Any, called: bool = True) -> tuple[str, Any]:
    """``("brax", env)`` or ``("gymnax", (env, params))`` for a built environment, else an error naming its type."""
    if isinstance(obj, _brax_base().Env):
        return "brax", obj
    gymnax_env = _gymnax_base().Environment
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], gymnax_env):
        return "gymnax", obj
    if isinstance(obj, gymnax_env):
        return "gymnax", (obj, obj.default_params)
    kind = (
        type(obj).__qualname__
        if type(obj).__module__ == "builtins"
        else f"{type(obj).__module__}.{type(obj).__qualname__}"
    )
    article = "an" if kind[0].lower() in "aeiou" else "a"
    what = f"{spec} {'returned' if called else 'is'} {article} {kind}"
    raise CustomEnvironmentError(f"{what}, not {WANTED}")


def _call(spec: str, factory: Callable[..., Any], options: dict[str, Any]) -> Any:
    try:
        with warnings.catch_warnings():  # brax.io.mjcf warns on every load that Brax is unmaintained
            warnings.filterwarnings("ignore", message="Brax System")
            return factory(**options)
    except TypeError as error:
        if options and "argument" in str(error):
            raise CustomEnvironmentError(
                f"{spec} does not accept {', '.join(f'{k}={v!r}' for k, v in options.items())}: {_one_line(error)}"
            ) from None
        raise CustomEnvironmentError(f"building {spec} failed: TypeError: {_one_line(error)}") from None
    except Exception as error:
        raise CustomEnvironmentError(f"building {spec} failed: {type(error).__name__}: {_one_line(error)}") from None


@functools.cache
def load(spec: str) -> CustomEnv:
    """Import, look up and build (once, with no options) the environment ``spec`` names."""
    where, attribute = split(spec)
    module = import_module(where)
    if not hasattr(module, attribute):
        if registered_brax(attribute):
            from brax import envs as brax_envs

            factory = functools.partial(brax_envs.get_environment, attribute)
            return CustomEnv(spec, "brax", factory, _classify(spec, _call(spec, factory, {}))[1])
        defined = sorted(
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == module.__name__
        )
        hint = f"; it defines {', '.join(defined)}" if defined else ""
        raise CustomEnvironmentError(
            f"{where} has no attribute {attribute!r} and no Brax environment {attribute!r} is registered{hint}"
        )
    obj = getattr(module, attribute)
    if inspect.isclass(obj) or (callable(obj) and not _is_env_instance(obj)):
        if inspect.isclass(obj) and not issubclass(obj, (_brax_base().Env, _gymnax_base().Environment)):
            raise CustomEnvironmentError(f"{spec} is the class {obj.__qualname__}, not {WANTED}")
        kind, instance = _classify(spec, _call(spec, obj, {}))
        return CustomEnv(spec, kind, obj, instance)
    kind, instance = _classify(spec, obj, called=False)
    return CustomEnv(spec, kind, None, instance)


def _is_env_instance(obj: Any) -> bool:
    return isinstance(obj, (_brax_base().Env, _gymnax_base().Environment))
