"""The one way the project reads a YAML file of its own: environment values filled in, errors that name the file.

Every configuration file (the sources config, config/scoring.yml) goes through :func:`read_yaml`.
``${VAR}`` and ``${VAR:-default}`` are filled from the environment, so one file serves the demo,
the tests and a real deployment while credentials stay in the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Innermost first, so a default may itself hold a ${VAR}: ${A:-${B:-x}/y}.
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^${}]*))?\}")


class ConfigError(ValueError):
    """A configuration file cannot be used; the message says which file and which key."""


def interpolate(text: str, source: Path, environ: Mapping[str, str] | None = None) -> str:
    """Fill ``${VAR}`` / ``${VAR:-default}`` from ``environ`` (the process environment by default)."""
    environ = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None or value == "":
            if default is None:
                raise ConfigError(f"{source}: environment variable {name} is not set and has no default")
            return default
        return value

    while True:
        filled = _ENV_PATTERN.sub(replace, text)
        if filled == text:
            return filled
        text = filled


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    """The mapping in ``path`` with environment values filled in; ``what`` names the file in errors."""
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    try:
        loaded = yaml.safe_load(interpolate(path.read_text(encoding="utf-8"), path)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the {what} must be a mapping of keys to values")
    return loaded


def env_path(variable: str, default: Path) -> Path:
    """A path named by an environment variable (resolved), else ``default``."""
    value = os.environ.get(variable)
    return Path(value).resolve() if value else default
