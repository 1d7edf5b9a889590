"""Typed, frozen configs loaded from YAML and overridable from the command line.

Per-environment PPO settings live in ``configs/train/<env>.yaml``; an env with
no file of its own falls back to ``configs/train/defaults/<family>.yaml``
(classic_control, minatar, brax, ...), and the caller is told so.

A train YAML looks like::

    env: hopper
    env_options: {backend: positional, episode_length: 1000}
    ppo: {total_timesteps: 50000000, num_envs: 2048, ...}      # PPOConfig fields
    profiles:                                                   # optional: device-sized variants
      cpu: {ppo: {total_timesteps: 1000000, num_envs: 32, ...}}  # laid over ppo / env_options

A YAML with ``profiles`` runs its ``cpu`` profile when JAX finds no
accelerator (``jax.default_backend() == "cpu"``) and its top-level settings
(the ``accelerator`` profile) otherwise; ``--profile cpu|accelerator`` (an
override like any other) chooses explicitly. ``DISCOVERY_CONFIGS`` names another
directory laid out like ``configs/`` to read every YAML from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

import drift_functions
import envs
from discovery.runtime.errors import UserError
from rl_algos.ppo import PPOConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_ROOT = Path(os.environ.get("DISCOVERY_CONFIGS", REPO_ROOT / "configs"))
BRAX_ENV_OPTIONS = {"backend": str, "episode_length": int, "action_repeat": int}
PROFILES = ("cpu", "accelerator")  # "auto" (the default) picks by jax.default_backend()
PROFILE_KEY = "profile"  # an override like --num-envs, routed with the env options


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping; a missing or malformed file is a :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"malformed YAML in {path}{where}: {getattr(error, 'problem', error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {path} must be a YAML mapping, got {type(data).__name__}")
    return data


# ---- typed coercion ---------------------------------------------------------


def coerce(value: Any, annotation: Any, name: str) -> Any:
    """Convert ``value`` (from YAML or a command-line string) to ``annotation`` (a resolved type, see
    :func:`field_types`)."""
    origin = typing.get_origin(annotation)
    try:
        if origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
                return None
            return coerce(value, options[0], name)
        if origin is tuple:
            (item_type, *_) = typing.get_args(annotation)
            if isinstance(value, str):
                value = [v for v in value.strip("[]() ").split(",") if v.strip()]
            return tuple(coerce(v, item_type, name) for v in value)
        if annotation is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if annotation is int:
            if isinstance(value, str):
                as_float = float(value)  # accept 5e5 for counts
                if as_float != int(as_float):
                    raise ValueError(value)
                return int(as_float)
            if isinstance(value, float) and value != int(value):
                raise ValueError(value)
            return int(value)
        if annotation is float:
            if isinstance(value, bool):
                raise TypeError(value)
            number = float(value)
            if not math.isfinite(number):  # inf/nan learning rates "train" to NaN and report success
                raise UserError(f"bad value for {name}: {value!r} is not finite; give a finite number")
            return number
        if annotation is str:
            return str(value)
    except (TypeError, ValueError, OverflowError):
        type_name = getattr(annotation, "__name__", str(annotation))
        kind = {
            "int": "a valid int (an integer, 5e5 allowed)",
            "float": "a valid float (a finite number)",
            "bool": "a valid bool (true/false)",
        }.get(type_name, f"a valid {type_name}")
        raise UserError(f"bad value for {name}: {value!r} is not {kind}") from None
    return value


def field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def replace_fields(instance, values: dict[str, Any], context: str):
    """``dataclasses.replace`` with type coercion and a helpful error for unknown keys."""
    types_ = field_types(type(instance))
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise UserError(f"unknown {context} field(s) {', '.join(unknown)}; valid fields: {', '.join(types_)}")
    coerced = {k: coerce(v, types_[k], k) for k, v in values.items()}
    return dataclasses.replace(instance, **coerced)


def parse_overrides(tokens: list[str]) -> dict[str, str]:
    """``['--num-envs', '8', '--es.sigma=0.1']`` → ``{'num_envs': '8', 'es.sigma': '0.1'}``."""
    overrides: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--") or len(token) <= 2:
            raise UserError(f"unexpected argument {token!r}; overrides look like --key value or --key=value")
        key, sep, value = token[2:].partition("=")
        if not sep:
            if index + 1 >= len(tokens) or tokens[index + 1].startswith("--"):
                raise UserError(f"override --{key} needs a value (--{key} VALUE or --{key}=VALUE)")
            value = tokens[index + 1]
            index += 1
        overrides[key.replace("-", "_")] = value
        index += 1
    return overrides


# ---- the override router ------------------------------------------------------------

# What each target of an override is, for messages.
TARGETS = {
    "ppo": "the PPO learner",
    "env": "the Brax environment",
    "drift": "the drift",
    "es": "the evolution strategy",
    "meta_gradient": "the meta-gradient outer loop",
    "meta": "the meta-training run",
}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def route_overrides(overrides: dict[str, Any], targets: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Send every ``key: value`` to the one target that has a field ``key``, coerced to that field's type.

    ``targets`` maps target names (:data:`TARGETS`) to ``{field: type}``.
    ``target.field`` names the target explicitly (``es.learning_rate``); a
    bare key that more than one target has is refused, never guessed.
    Returns ``{target: {field: value}}`` with every target present.
    """
    routed: dict[str, dict[str, Any]] = {name: {} for name in targets}
    for key, value in overrides.items():
        prefix, dot, field = key.partition(".")
        if dot and prefix in targets:
            if field not in targets[prefix]:
                raise UserError(
                    f"unknown {prefix} field {field!r} in {_flag(key)}; valid {prefix} fields: "
                    f"{', '.join(targets[prefix])}"
                )
            owners = [prefix]
        else:
            field = key
            owners = [name for name, fields in targets.items() if key in fields]
            if not owners:
                valid = "; ".join(f"{name}: {', '.join(fields)}" for name, fields in targets.items() if fields)
                raise UserError(f"unknown option {_flag(key)}; valid options ({valid})")
            if len(owners) > 1:
                meanings = " or ".join(f"{name}.{key} ({TARGETS.get(name, name)})" for name in owners)
                spelled = " or ".join(_flag(f"{name}.{key}") for name in owners)
                raise UserError(f"{_flag(key)} is ambiguous: {meanings}; write {spelled}")
        routed[owners[0]][field] = coerce(value, targets[owners[0]][field], key)
    return routed


def train_targets() -> dict[str, dict[str, Any]]:
    """Override targets of one training run: PPO fields and Brax env options."""
    return {"ppo": field_types(PPOConfig), "env": {**BRAX_ENV_OPTIONS, PROFILE_KEY: str}}


def drift_option_types(name: str) -> dict[str, Any]:
    """``{option: type}`` of a drift family's factory (its keyword arguments)."""
    try:
        factory = drift_functions.factory(name)
    except ValueError as error:
        raise UserError(str(error)) from None
    return {k: v for k, v in typing.get_type_hints(factory).items() if k != "return"}


# ---- per-environment training configs -----------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """An environment, its options, and the PPO settings to train on it."""

    env: str
    env_options: dict
    ppo: PPOConfig
    source: str  # which YAML the settings came from
    profile: str | None = None  # "cpu" / "accelerator" where the YAML has profiles, else None

    def make_env(self):
        return envs.make(self.env, **self.env_options)

    def to_dict(self) -> dict:
        profile = {"profile": self.profile} if self.profile is not None else {}
        return {
            "env": self.env,
            "env_options": dict(self.env_options),
            "ppo": dataclasses.asdict(self.ppo),
            "source": self.source,
            **profile,
        }


def train_config_path(env_name: str) -> tuple[Path, bool]:
    """The YAML for ``env_name`` and whether it is a family fallback."""
    own = CONFIG_ROOT / "train" / f"{env_name}.yaml"
    if not envs.custom.is_custom(env_name) and own.is_file():
        return own, False
    return CONFIG_ROOT / "train" / "defaults" / f"{envs.family_of(env_name)}.yaml", True


def load_train_spec(
    env_name: str, overrides: dict[str, Any] | None = None, config_path: str | None = None
) -> tuple[TrainSpec, bool]:
    """Resolve the settings for ``env_name``; returns ``(spec, used_family_default)``.

    ``overrides`` may name any :class:`PPOConfig` field or, for Brax, an env
    option (``backend``, ``episode_length``, ``action_repeat``); see :func:`route_overrides`.
    ``profile`` (``cpu``, ``accelerator`` or ``auto``) picks one of the YAML's
    ``profiles``; see the module docstring.
    """
    try:
        envs.check(env_name)
    except envs.UnknownEnvironmentError as error:
        raise UserError(str(error)) from None
    if config_path is not None:
        path, fallback = Path(config_path), False
    else:
        path, fallback = train_config_path(env_name)
    data = load_yaml(path)
    unknown = sorted(set(data) - {"env", "env_options", "ppo", "profiles"})
    if unknown:
        raise UserError(f"unknown key(s) {', '.join(unknown)} in {path}; valid keys: env, env_options, ppo, profiles")
    if data.get("env") is not None and str(data["env"]) != env_name:
        raise UserError(
            f"{path} is the config of {data['env']!r}, not {env_name!r}; pass --env {data['env']} or another config"
        )
    routed = route_overrides(overrides or {}, train_targets())
    profile, overlay = select_profile(data.get("profiles"), routed["env"].pop(PROFILE_KEY, None), path)
    env_options = {**(data.get("env_options") or {}), **(overlay.get("env_options") or {}), **routed["env"]}
    ppo_values = {**(data.get("ppo") or {}), **(overlay.get("ppo") or {}), **routed["ppo"]}
    if env_options and envs.family_of(env_name) != "brax":
        raise UserError(f"env options {', '.join(sorted(env_options))} only apply to Brax environments, not {env_name}")
    env_options = {k: coerce(v, BRAX_ENV_OPTIONS[k], k) if k in BRAX_ENV_OPTIONS else v for k, v in env_options.items()}
    for name in ("episode_length", "action_repeat"):
        if name in env_options and env_options[name] < 1:
            raise UserError(f"{name} must be a positive integer (env steps), got {env_options[name]}")
    backend = env_options.get("backend")
    if backend is not None and backend not in envs.BRAX_BACKENDS:
        raise UserError(f"unknown brax backend {backend!r}; valid backends: {', '.join(envs.BRAX_BACKENDS)}")
    ppo = replace_fields(PPOConfig(), ppo_values, "ppo config")
    try:
        ppo.validate()
    except ValueError as error:
        raise UserError(str(error)) from None
    source = str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)
    return TrainSpec(env_name, env_options, ppo, source, profile), fallback


def auto_profile() -> str:
    """``cpu`` when JAX runs on the CPU only, else ``accelerator``."""
    import jax

    return "cpu" if jax.default_backend() == "cpu" else "accelerator"


def select_profile(profiles: Any, requested: str | None, path: Path) -> tuple[str | None, dict]:
    """``(profile name, settings to lay over the YAML's own)`` for a YAML's ``profiles`` mapping.

    ``accelerator`` is the YAML's own settings (an ``accelerator:`` entry, if
    any, is laid over them too); ``requested`` of ``None`` or ``auto`` means
    :func:`auto_profile`. A YAML without ``profiles`` has one setting: ``(None, {})``.
    """
    if requested is not None and str(requested) not in (*PROFILES, "auto"):
        raise UserError(
            f"unknown profile {requested!r}; valid profiles: {', '.join(PROFILES)}, auto (the default: cpu without "
            "an accelerator)"
        )
    if not profiles:
        return None, {}
    if not isinstance(profiles, dict) or not set(profiles) <= set(PROFILES):
        bad = sorted(set(profiles) - set(PROFILES)) if isinstance(profiles, dict) else [type(profiles).__name__]
        raise UserError(f"bad profiles in {path}: {', '.join(map(str, bad))}; valid profiles: {', '.join(PROFILES)}")
    for name, overlay in profiles.items():
        if not isinstance(overlay, dict) or not set(overlay) <= {"env_options", "ppo"}:
            raise UserError(f"profile {name} in {path} must be a mapping with env_options and/or ppo")
    name = auto_profile() if requested in (None, "auto") else str(requested)
    return name, profiles.get(name) or {}


def split_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: a comma-separated list from the command line or a YAML value."""
    return [part.strip() for part in text.split(",") if part.strip()]
