"""YAML configs validated by pydantic, with ``key=value`` overrides from the command line.

Every config model in the project derives from :class:`StrictModel`, so unknown keys are
errors (a typo never silently falls back to a default). :func:`load_config` is the one
place a YAML file plus CLI overrides become a validated object; failures raise
:class:`ConfigError` whose message names the field, the bad value and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config schema: unknown keys are rejected, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(ValueError):
    """An invalid config: the message is meant to be shown to the user as is."""


def parse_value(raw: str) -> Any:
    """A command-line value as YAML (``3``, ``true``, ``[a, b]``, ``{k: v}``, and ``1e-4`` as a
    float); a list YAML cannot read as one flow sequence (``[eval.tasks=[a], x=1]``: nested
    brackets) is split at its top-level commas, ``key=value`` items kept as strings and others
    read alone; anything else unreadable stays the string it was typed as."""
    text = raw.strip()
    if not text:
        return ""
    try:
        value = yaml.safe_load(text)
        return float(value) if isinstance(value, str) and _EXP_FLOAT.match(value) else value
    except yaml.YAMLError:
        pass
    if text.startswith("[") and text.endswith("]"):
        items = _split_top_level(text[1:-1])
        if items is not None:
            return [i.strip() if _OVERRIDE.match(i.strip()) else parse_value(i) for i in items if i.strip()]
    return raw


_EXP_FLOAT = re.compile(r"^[-+]?\d+(\.\d*)?[eE][-+]?\d+$")  # 1e-4: a string to YAML 1.1, a float to users
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.-]*=")  # an item that is itself a key=value override stays a string


def _split_top_level(text: str) -> list[str] | None:
    """``a=[1, 2], b={x: 1}`` -> ["a=[1, 2]", "b={x: 1}"]; None when brackets or quotes do not balance."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                return None
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth or quote:
        return None
    return [*items, text[start:]]


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value); the value is parsed by :func:`parse_value`."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr=3e-4)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    return key.split("."), parse_value(raw)


def _next_key(node: dict[str, Any], parts: list[str]) -> int:
    """How many of ``parts`` name the next key: the longest dotted run that is already a key
    (mappings keyed by dotted names, e.g. a search space's ``loss.temperature``), else one."""
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in node:
            return n
    return 1


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted ``key=value`` overrides applied.

    A key segment may itself contain dots when the mapping already has that key:
    ``search.loss.temperature.low=0.01`` edits the ``loss.temperature`` entry of ``search``.
    """
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        path, value = parse_override(item)
        node = out
        while True:
            n = _next_key(node, path)
            key, path = ".".join(path[:n]), path[n:]
            if not path:
                node[key] = value
                break
            nxt = node.get(key)
            if nxt is None:
                nxt = node[key] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {key!r} is not a section")
            node = nxt
    return out


def format_validation_error(err: ValidationError, source: str = "config") -> str:
    """Render pydantic errors as 'field: bad value -> what is allowed' lines."""
    lines = [f"invalid {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        bad = e.get("input")
        if e["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown field (value {bad!r}); check the spelling")
            continue
        allowed = e["msg"]
        ctx = e.get("ctx") or {}
        if "expected" in ctx:
            allowed = f"expected {ctx['expected']}"
        lines.append(f"  {loc}: got {bad!r}; {allowed}")
    return "\n".join(lines)


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def validate(model: type[T], data: dict[str, Any], source: str = "config") -> T:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def load_config(model: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Load ``path`` (optional) into ``model``, applying ``key=value`` overrides first."""
    data = read_yaml(path) if path else {}
    data = apply_overrides(data, overrides)
    return validate(model, data, source=str(path) if path else "config")


def dump_config(cfg: BaseModel, path: str | Path) -> None:
    """Write a config back as YAML (JSON-compatible values only), atomically."""
    from merl.core.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
