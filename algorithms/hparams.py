"""Typed configuration helpers: dataclasses built from dicts that reject unknown keys.

Hyperparameter classes may carry two kinds of metadata that tools read instead of keeping
side tables:

* field metadata ``range`` / ``scale`` (what a search may vary, ``tune_spaces``) and
  ``orders`` (:func:`method_field`: a field choosing how a meta step is computed, and the
  order of derivatives each choice takes, ``bench.perf``);
* a class attribute ``renamed = {"old_name": "new_name"}``: keys that older configs still
  use; :func:`from_dict` maps them to the new name with a one-line deprecation warning.
"""
from __future__ import annotations

import dataclasses
import typing
import warnings
from typing import Any, Literal, TypeVar

T = TypeVar("T")
Order = Literal["first", "second"]


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message is one line for the user."""


class RenamedKeyWarning(FutureWarning):
    """A configuration uses a key that has a new name (shown once per key, on one line)."""


_format_warning = warnings.formatwarning


def _one_line_for_renamed(message, category, filename, lineno, line=None) -> str:
    if isinstance(category, type) and issubclass(category, RenamedKeyWarning):
        return f"warning: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


warnings.formatwarning = _one_line_for_renamed


def coerce_value(value: Any, annotation: Any, where: str) -> Any:
    """``value`` as the type ``annotation`` names (float, int, bool, str or a Literal);
    ConfigError with a one-line message otherwise. Other annotations pass the value through."""
    origin = typing.get_origin(annotation)
    if annotation in (float, "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation in (int, "int"):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if annotation in (bool, "bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation in (str, "str"):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            choices = ", ".join(map(str, typing.get_args(annotation)))
            raise ConfigError(f"{where} must be one of {choices}, got {value!r}")
        return value
    return value


def renamed_keys(cls: type) -> dict[str, str]:
    """``cls.renamed``: old configuration key -> current field name ({} if none)."""
    return dict(getattr(cls, "renamed", None) or {})


def optional_in_identity(cls: type) -> tuple[str, ...]:
    """``cls.optional_in_identity``: fields added after run ids were published that do not change
    what training computes; a run id leaves them out at their defaults, so adding one keeps every
    stored run's id (``bench.config.RunConfig.run_id``)."""
    return tuple(getattr(cls, "optional_in_identity", None) or ())


def current_names(cls: type, data: dict[str, Any], what: str) -> dict[str, Any]:
    """``data`` with old keys of ``cls`` (see :func:`renamed_keys`) replaced by their new names,
    each with a one-line :class:`RenamedKeyWarning`; ConfigError if both names are given."""
    renamed = renamed_keys(cls)
    out = dict(data)
    for old in [k for k in data if k in renamed]:
        new = renamed[old]
        if new in data:
            raise ConfigError(f"{what} {old} and {new} are the same option (old and new name); give only {new}")
        warnings.warn(f"{what} {old} is deprecated: use {new} (same values)", RenamedKeyWarning, stacklevel=3)
        out[new] = out.pop(old)
    return out


def from_dict(cls: type[T], data: dict[str, Any] | None, what: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and mistyped values raise ConfigError.

    ``what`` names the thing being configured in error messages (e.g. "meta_semi hyperparameter").
    Old key names listed in ``cls.renamed`` are accepted with a deprecation warning.
    """
    data = current_names(cls, dict(data or {}), what)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "none"
        raise ConfigError(f"unknown {what} {', '.join(unknown)} (valid: {valid})")
    kwargs = {k: coerce_value(v, hints[k], f"{what} {k}") for k, v in data.items()}
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check()
    return obj


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def method_field(default: str, orders: dict[str, Order | None], **metadata: Any) -> Any:
    """A dataclass field that chooses how a meta step is computed.

    ``orders`` maps every value to the order of the derivatives it takes: ``"first"``
    (directional derivatives, finite differences, last-layer approximations), ``"second"``
    (differentiating through a virtual step) or None (no meta step at all: it costs what the
    base costs). ``bench.perf`` measures one row per value that is not None.
    """
    return dataclasses.field(default=default, metadata={"orders": dict(orders), **metadata})


def method_fields(hparams_cls: type) -> dict[str, dict[str, Order | None]]:
    """{field name: orders} of the :func:`method_field` fields of ``hparams_cls``, in order."""
    return {f.name: dict(f.metadata["orders"]) for f in dataclasses.fields(hparams_cls) if "orders" in f.metadata}


def order_of(hparams_cls: type, values: dict[str, Any]) -> str | None:
    """The order of the derivatives a meta step takes with these hyperparameter values (the
    class defaults fill in the rest): "second" if any method field's value is second order,
    else "first", else "none" (the meta step switched off); None if no field is a method field."""
    fields = method_fields(hparams_cls)
    if not fields:
        return None
    defaults = {f.name: f.default for f in dataclasses.fields(hparams_cls) if f.default is not dataclasses.MISSING}
    merged = {**defaults, **values}
    orders = [fields[k].get(merged[k]) for k in fields]
    return "second" if "second" in orders else "first" if "first" in orders else "none"


def adopt_generic_hparams(cls: type, root: type) -> None:
    """Set ``cls.Hparams = H`` for ``class cls(root[H])`` (or a subclass of ``root``
    parametrised the same way), unless ``cls`` sets ``Hparams`` itself or names no class."""
    if "Hparams" in cls.__dict__:
        return
    for base in getattr(cls, "__orig_bases__", ()):
        origin = typing.get_origin(base)
        if isinstance(origin, type) and issubclass(origin, root):
            args = [a for a in typing.get_args(base) if isinstance(a, type)]
            if args:
                cls.Hparams = args[0]
                return
