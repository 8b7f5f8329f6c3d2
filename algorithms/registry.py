"""Registry of algorithms by name.

Every module of this package is imported once on first use, and each algorithm module
registers its class with :func:`register`; adding an algorithm touches only its own file
(and its test).
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Algorithm
from .hparams import ConfigError, from_dict

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


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and not info.ispkg:
            importlib.import_module(f"{__package__}.{info.name}")
    _loaded = True


def list_algorithms() -> list[str]:
    """Registered algorithm names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_algorithm(name: str) -> type[Algorithm]:
    """The class registered as ``name``; ConfigError listing the valid names otherwise."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown algorithm {name!r} (valid: {', '.join(sorted(_REGISTRY))})") from None


def parse_hparams(name: str, values: dict | None):
    """The typed hyperparameters of algorithm ``name`` from a dict (unknown keys rejected)."""
    cls = get_algorithm(name)
    return from_dict(cls.Hparams, values, f"{name} hyperparameter")
