"""Typed settings, loaded once per process.

Each process has one frozen dataclass of settings (`WebNodeSettings`,
`ComputeNodeSettings`). Every field is declared with `setting(default, help)`; its
environment variable is `O16N_` + the field name in upper case. A TOML file named by
`O16N_CONFIG_FILE` may set the same keys (lower case field names); an unknown key in the
file is a startup error. Environment variables win over the file.

`docs/configuration.md` documents every setting; a test keeps it in step with the code.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

PREFIX = "O16N_"
T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the process must not start."""


def setting(default: Any, help: str) -> Any:
    """Declare a settings field with its default and help text."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def _parse(raw: Any, annotation: Any, name: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if raw is None or raw == "":
            return None
        return _parse(raw, args[0], name)
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{env_name(name)}: expected true or false, got {raw!r}")
    if annotation is int or annotation is float:
        try:
            return annotation(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{env_name(name)}: expected a number, got {raw!r}") from None
    if annotation is Path:
        return Path(str(raw)).expanduser()
    if origin is list:
        if isinstance(raw, list):
            return [str(v).strip() for v in raw if str(v).strip()]
        return [part.strip() for part in str(raw).split(",") if part.strip()]
    return str(raw)


def load(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build `cls` from the config file, the environment and explicit overrides (in rising priority)."""
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    config_file = env.get(PREFIX + "CONFIG_FILE")
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"O16N_CONFIG_FILE {config_file}: {exc}") from None
        for key, raw in data.items():
            if key not in fields and key not in known_setting_names():
                raise SettingsError(f"O16N_CONFIG_FILE {config_file}: unknown setting {key!r}")
            if key in fields:
                values[key] = _parse(raw, hints[key], key)
    for name in fields:
        raw = env.get(env_name(name))
        if raw is not None:
            values[name] = _parse(raw, hints[name], name)
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = cls(**values)
    validate = getattr(settings, "validate", None)
    if callable(validate):
        validate()
    return settings


def load_or_exit(cls: type[T], process: str) -> T:
    """`load(cls)` for a process's entry point: a bad setting ends it with one line naming it."""
    try:
        return load(cls)
    except SettingsError as exc:
        sys.exit(f"o16n {process}: {exc}")


def describe(cls: type[Any]) -> list[tuple[str, str, str]]:
    """(environment variable, default, help) of every setting of `cls`."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(default, list):
            default = ",".join(default)
        rows.append((env_name(f.name), "" if default is None else str(default), f.metadata.get("help", "")))
    return rows


def known_setting_names() -> set[str]:
    """Every field name of every settings class (a config file may serve several processes)."""
    from computenode.settings import ComputeNodeSettings
    from webnode.settings import WebNodeSettings

    return {f.name for cls in (WebNodeSettings, ComputeNodeSettings) for f in dataclasses.fields(cls)}
