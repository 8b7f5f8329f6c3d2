"""Meta rules, one file each, registered with :func:`algorithms.meta.rule.register_rule`.

Each acts on a base method's imputed targets, distance and per-sample weights; a run names
``BASE+RULE`` (see :mod:`algorithms.meta.compose`).
"""
