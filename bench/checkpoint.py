"""Run checkpoints that cannot run code: tensors and plain containers only.

A checkpoint is one ``state.pt`` file written by :func:`save_state` and read back by
:func:`load_state` with ``torch.load(weights_only=True)``, which unpickles tensors, numbers,
strings, None and dict/list/tuple containers and refuses every other object. A file in a
results directory can be planted by anyone who can write there; an unrestricted unpickler
would run whatever it names on resume. A checkpoint that does not load this way is
refused with one line (:class:`CheckpointError`), before anything in it is used.
"""
from __future__ import annotations

import os
import pickle
from typing import Any

import torch

CKPT_FILE = "state.pt"
_PLAIN = (bool, int, float, str, bytes, type(None))


class CheckpointError(RuntimeError):
    """A checkpoint cannot be saved or loaded safely (one-line message)."""


def check_plain(value: Any, where: str = "state") -> None:
    """CheckpointError unless ``value`` holds only tensors, numbers, strings, None and
    dict / list / tuple containers of them (what ``weights_only=True`` loads)."""
    if isinstance(value, torch.Tensor) or isinstance(value, _PLAIN):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise CheckpointError(f"checkpoint key {where}[{k!r}] is a {type(k).__name__}, not str or int")
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    raise CheckpointError(f"checkpoint entry {where} is a {type(value).__module__}.{type(value).__qualname__}; "
                          f"checkpoints hold only tensors and plain containers")


def save_state(state: dict, directory: str) -> str:
    """Write ``state`` (checked by :func:`check_plain`) to ``directory/state.pt``; returns the path."""
    check_plain(state)
    path = os.path.join(directory, CKPT_FILE)
    torch.save(state, path)
    return path


def load_state(directory: str) -> dict:
    """The state in ``directory/state.pt``, loaded with ``weights_only=True``.

    CheckpointError (one line) when the file is missing, truncated, or holds anything but
    tensors and plain containers; nothing in a refused file is executed.
    """
    path = os.path.join(directory, CKPT_FILE)
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} is missing") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as e:
        reason = " ".join(str(e).split()).split(" Check the documentation")[0]
        raise CheckpointError(f"refusing checkpoint {path}: it does not load as tensors and plain containers "
                              f"(torch.load weights_only=True: {reason[:200]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"refusing checkpoint {path}: it holds a {type(state).__name__}, not a state dict")
    return state
