"""The rows of the performance table: every base, every ``BASE+RULE`` pair and each of its
method variants, each with the row it is compared with.

All of it is read from the classes: a rule's method fields and the order of the derivatives
each value takes (``algorithms.hparams.method_field``), a composition's base
(``base_class``), a standalone meta method's ``cost_reference``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from algorithms import ConfigError, get_algorithm, list_algorithms, list_compositions
from algorithms.hparams import from_dict, method_fields, order_of

from ..cli_errors import UsageError, split_list
from ..planner import parse_value


@dataclass(frozen=True)
class RowSpec:
    """One row of the table: an algorithm with some hyperparameters set (a variant)."""

    name: str  # shown in the table, e.g. "pseudo_label+meta_grad[meta_method=fd]"
    algorithm: str  # registry name, e.g. "pseudo_label+meta_grad"
    hparams: dict[str, Any] = field(default_factory=dict)
    rule: str = ""  # "" for a base
    order: str = "base"  # base | first | second | none (meta step off) | ? (not declared)
    reference: str | None = None  # row name of the base it is compared with


def meta_part(cls: type) -> tuple[str, type | None]:
    """(rule name, class whose Hparams hold the meta-step settings) or ("", None) for a base."""
    rule = getattr(cls, "rule_class", None)
    if rule is not None:
        return rule.name, rule
    if getattr(cls, "cost_reference", None):
        return cls.name, cls
    return "", None


def variant_fields(hparams_cls: type) -> dict[str, tuple]:
    """The meta-step method fields of ``hparams_cls`` and the values measured for each: every
    value whose order is declared (a value with order None switches the meta step off and
    costs what the base costs)."""
    return {name: tuple(v for v, o in orders.items() if o is not None) for name, orders in method_fields(hparams_cls).items()}


def row_order(holder: type | None, values: dict[str, Any]) -> str:
    """second if any method field's value (given or default) is second order, else first,
    else none (the meta step switched off); the rule's ``meta_order`` where it has no method field."""
    if holder is None:
        return "base"
    return order_of(holder.Hparams, values) or getattr(holder, "meta_order", None) or "?"


def variant_name(algorithm: str, values: dict[str, Any]) -> str:
    if not values:
        return algorithm
    return f"{algorithm}[{','.join(f'{k}={v}' for k, v in values.items())}]"


def expand_rows(algorithm: str, cls: type, explicit: list[dict[str, Any]] | None = None,
                auto: bool = True) -> list[RowSpec]:
    """The rows of one algorithm: one per explicit variant (a dict of hyperparameters), else
    one per combination of its rule's method-field values (``auto``), else one with defaults.
    Raises ConfigError if an explicit variant names an unknown field or a value out of range."""
    rule, holder = meta_part(cls)
    if rule and getattr(cls, "cost_reference", None):
        reference = cls.cost_reference
    elif rule:
        reference = cls.base_class.name
    else:
        reference = cls.name
    if explicit:
        combos = explicit
        for values in combos:
            from_dict(cls.Hparams, values, f"{algorithm} hyperparameter")  # unknown field / bad value -> ConfigError
    elif auto and holder is not None and variant_fields(holder.Hparams):
        fields_ = variant_fields(holder.Hparams)
        combos = [dict(zip(fields_, vals)) for vals in itertools.product(*fields_.values())]
    else:
        combos = [{}]
    return [RowSpec(variant_name(algorithm, v), algorithm, dict(v), rule, row_order(holder, v), reference)
            for v in combos]


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:FIELD=VALUE[,FIELD=VALUE]`` -> (NAME, {FIELD: VALUE}); values typed as ``bench.run
    --hp`` types them (``bench.planner.parse_value``: ints, floats, true/false, else strings)."""
    name, sep, rest = text.partition(":")
    if not sep or not name or not rest:
        raise UsageError(f"--variants entry {text!r} is not NAME:FIELD=VALUE[,FIELD=VALUE]")
    values: dict[str, Any] = {}
    try:
        pairs = split_list(rest)
    except ValueError as e:
        raise UsageError(f"--variants entry {text!r}: {e}") from None
    for pair in pairs:
        k, eq, v = pair.partition("=")
        if not eq or not k.strip():
            raise UsageError(f"--variants entry {text!r}: {pair!r} is not FIELD=VALUE")
        values[k.strip()] = parse_value(v.strip())
    return name, values


def standalone_meta_methods() -> list[str]:
    """Registered algorithms that are meta methods but not rules (they name a ``cost_reference``)."""
    return [a for a in list_algorithms() if getattr(get_algorithm(a), "cost_reference", None)]


def plan_rows(algorithms: list[str] | None, variants: list[str], auto: bool,
              resolve=get_algorithm) -> list[RowSpec]:
    """Every row to measure: ``algorithms`` (default: every base with a composition, every
    composition, the standalone meta methods) expanded into variants, and the bases they are
    compared with put first where missing. UsageError on bad input."""
    explicit: dict[str, list[dict[str, Any]]] = {}
    for entry in variants:
        name, values = parse_variant(entry)
        explicit.setdefault(name, []).append(values)
    if algorithms is None:
        comps = list_compositions()
        bases = sorted({c.partition("+")[0] for c in comps})
        algorithms = bases + comps + standalone_meta_methods()
    for name in explicit:
        if name not in algorithms:
            algorithms = [*algorithms, name]
    rows: list[RowSpec] = []
    names: list[str] = []
    for name in algorithms:
        if name in names:
            continue
        try:
            cls = resolve(name)
            new = expand_rows(name, cls, explicit.get(name), auto)
        except ConfigError as e:
            raise UsageError(str(e)) from None
        names.append(name)
        rows.extend(new)
    present = {r.name for r in rows}
    missing = []
    for r in rows:
        if r.reference and r.reference not in present and r.reference not in missing:
            missing.append(r.reference)
    added: list[RowSpec] = []
    for ref in missing:  # a ratio needs its base: measure it too, first
        try:
            added.extend(expand_rows(ref, resolve(ref), None, auto))
        except ConfigError as e:
            raise UsageError(str(e)) from None
    return added + rows
