"""SSL algorithms: base methods (imputer + distance + schedule), meta rules, networks.

Nothing here imports ``bench`` or Ray, so every method can be tested in plain PyTorch.
"""
from .base import Algorithm, BaseMethod, Batch, HoldoutSpec, LossTerms, StepInputs, TrainContext
from .hparams import ConfigError
from .parallel import Comm, TorchDistComm, make_comm
from .registry import get_algorithm, list_algorithms, list_compositions, list_rules, parse_hparams, register
from .stepper import Stepper

__all__ = [
    "Algorithm", "BaseMethod", "Batch", "Comm", "ConfigError", "HoldoutSpec", "LossTerms", "StepInputs", "Stepper",
    "TorchDistComm", "TrainContext", "get_algorithm", "list_algorithms", "list_compositions", "list_rules", "make_comm", "parse_hparams", "register",
]
