"""Registry of algorithms by name.

Every module of this package and of ``algorithms.rules`` is imported once on first use; each
algorithm module registers its class with :func:`register`, each meta rule with
:func:`~algorithms.meta.rule.register_rule`. Adding an algorithm or a rule touches only its
own file (and its test). ``BASE+RULE`` names are composed on demand
(:func:`~algorithms.meta.compose.compose`).

Algorithms and rules outside this package: name their packages (or modules) in the
environment variable :data:`PLUGINS_ENV` (comma-separated, importable from ``sys.path``);
every module of such a package is imported too, in the CLIs and in Ray workers alike.
"""
from __future__ import annotations

import importlib
import os
import pkgutil

from .base import Algorithm
from .hparams import ConfigError, from_dict
from .meta.compose import compose
from .meta.rule import get_rule, rules

PLUGINS_ENV = "META_SSL_BENCH_PLUGINS"

_REGISTRY: dict[str, type[Algorithm]] = {}
_loaded = False


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"algorithm {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def plugin_packages() -> list[str]:
    """The packages named in :data:`PLUGINS_ENV`, in order."""
    return [p.strip() for p in os.environ.get(PLUGINS_ENV, "").split(",") if p.strip()]


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    plugins = plugin_packages()
    for pkg_name in (__package__, f"{__package__}.rules", *plugins):
        try:
            package = importlib.import_module(pkg_name)
        except ModuleNotFoundError as e:
            missing = e.name or ""
            if pkg_name not in plugins or not (pkg_name == missing or pkg_name.startswith(missing + ".")):
                raise  # a module the plugin itself imports is missing: the real error
            raise ConfigError(f"cannot import {pkg_name!r} named in {PLUGINS_ENV}: {e}") from None
        for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
            if not info.name.startswith("_") and not info.ispkg:
                importlib.import_module(f"{pkg_name}.{info.name}")
    _loaded = True


def list_algorithms() -> list[str]:
    """Registered algorithm names (base methods and standalone methods, no compositions), sorted."""
    _load_all()
    return sorted(_REGISTRY)


def list_rules() -> list[str]:
    """Registered meta-rule names, sorted."""
    _load_all()
    return sorted(rules())


def list_compositions() -> list[str]:
    """Every ``BASE+RULE`` name whose rule accepts its base, sorted."""
    _load_all()
    return sorted(f"{b}+{r}" for r, rule in rules().items() for b, base in _REGISTRY.items() if rule.refuse(base) is None)


def get_algorithm(name: str) -> type[Algorithm]:
    """The class for ``name`` (a registered algorithm, or ``BASE+RULE``); ConfigError otherwise."""
    _load_all()
    if "+" in name:
        base_name, _, rule_name = name.partition("+")
        if base_name not in _REGISTRY:
            raise ConfigError(f"unknown base algorithm {base_name!r} in {name!r} (valid: {', '.join(sorted(_REGISTRY))})")
        if "+" in rule_name:
            raise ConfigError(f"{name!r} names more than one meta rule; compose one base with one rule")
        return compose(_REGISTRY[base_name], get_rule(rule_name))
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown algorithm {name!r} (valid: {', '.join(sorted(_REGISTRY))}; "
                          f"or BASE+RULE with a rule among: {', '.join(sorted(rules())) or 'none'})") from None


def parse_hparams(name: str, values: dict | None):
    """The typed hyperparameters of algorithm ``name`` from a dict (unknown keys rejected)."""
    cls = get_algorithm(name)
    return from_dict(cls.Hparams, values, f"{name} hyperparameter")
