"""python -m bench.perf: per-step time and peak memory of every base and every BASE+RULE pair.

Every row trains the same network on the same dataset and batch sizes (default: digits,
cnn_small, 32 labeled + 96 unlabeled, plus the hold-out batch a rule asks for through its
``holdout_spec``), built by the engine's own builder (``bench.engine.build_run``: split,
device tensors, ``TrainContext`` with the dataset's augmentations, ``make_optimizer``,
``Stepper``, evaluation EMA, epoch samplers, hold-out sampler). Each row is compared with its
base (a ``BASE+RULE`` row with ``BASE``; a standalone meta method with its class's
``cost_reference``) against the targets: first-order rules at most 1.6x their base's time
and 1.3x its peak memory, exact second-order variants at most 3x and 1.6x (issue 14; a
method whose own definition needs more passes than its limit allows is held to its pass-count
floor, within 1.15x, and a loss rule whose meta step must run beside the base's graph to its
memory floor, within 1.15x: ``bench.perf.floors``, docs/benchmarks.md). The rows and their orders
come from the classes (``bench.perf.rows``).

Time: ``algo.train_step(batch, step, stepper)`` alone, timed with ``time.perf_counter``
(after ``torch.cuda.synchronize`` on a GPU); drawing the batch and the engine's evaluation
EMA are outside the timer, since they cost the same for every row and would only dilute
the ratios. Step indices start in the middle of a nominal ``HORIZON``-step run, so ramp-ups
and any rule warm-up are over. CPU runs call ``torch.set_flush_denormal(True)`` as the engine
does (finite-difference forwards were measured 10x slower without it).

Ratios are paired: a variant and its base are built in the same process and stepped in turn
(``--warmup`` untimed steps of each, then ``--steps`` pairs: a base step, a variant step, ...),
so both sides of a pair see the same machine state (load from other processes, clock, caches).
A variant's ratio is the median over its pairs of variant ms / base ms, with a 95% percentile
bootstrap interval over the pairs (``bench.perf.table.paired_ratio``). ``--repeat N`` measures
every pair N times, each in a fresh process, going round all pairs in turn; the base row's
ms/step and IQR are over all its steps in all its pairs. ``--out`` writes the table and every
pair (``OUT-pairs.csv``: name, reference, repeat, index, base_ms, ms, ratio).

Memory, in two parts whose sum is "peak MB" (the number the memory target is checked on):
- state: bytes of the distinct tensor storages reachable from the model (and its
  gradients), the optimizer, the algorithm (teachers, label tables, the rule's state) and
  the evaluation EMA, after the timed steps. Data tensors are left out: they are the same for
  every row, and on a GPU the engine's device-resident dataset would drown the differences.
- step: the peak of live tensor bytes during one training step above those live at its
  start (activations, autograd graphs, meta-gradient temporaries). On a GPU from the caching
  allocator's statistics (``max_memory_allocated`` after ``reset_peak_memory_stats``, minus
  ``memory_allocated`` at the step's start; the largest over the timed steps). On a CPU from
  the allocation events of ``torch.profiler`` with ``profile_memory=True`` over two extra,
  untimed steps: the running sum of allocations and frees, in time order, and its maximum
  during the second (the first lets the profiler see the blocks the second frees).
Limits: only tensors count (not Python objects, nor oneDNN/MKL scratch memory allocated outside
torch's allocator, nor the CUDA context or cuDNN workspaces); the CPU figure is from one step
(a data-dependent branch in another step could allocate more), and it misses frees of blocks
older than the step before it (an upper bound then); peak RSS was not used because
on CPU it is process-wide and monotone, and for these small models dominated by lazily
loaded library pages rather than by what the algorithm allocates.

Each pair (and each row with no variant, alone) runs in a fresh subprocess per repeat
(``python -m bench.perf --one NAME [--pair-base BASE] ...``, one JSON line back), so allocator
caches, thread pools and lazily initialised kernels of one pair do not favour the next, and
each process's peak memory is its own; ``--in-process`` runs them all here (quicker, less isolated).
The exit status is 0 even when targets are missed (a summary line lists them); bad input
gets one line on stderr and status 2 before anything is measured.
"""
from .cli import build_parser, jobs, main, measure_isolated, run_rows, spawn
from .measure import HORIZON, Options, measure, measure_pair
from .memory import cpu_step_peak, storage_bytes
from .rows import RowSpec, expand_rows, parse_variant, plan_rows, variant_fields
from .table import MEMORY_TARGET, TIME_TARGET, format_table, pair_records, paired_ratio, summarize

__all__ = ["HORIZON", "MEMORY_TARGET", "Options", "RowSpec", "TIME_TARGET", "build_parser", "cpu_step_peak",
           "expand_rows", "format_table", "jobs", "main", "measure", "measure_isolated", "measure_pair", "pair_records",
           "paired_ratio", "parse_variant", "plan_rows", "run_rows", "spawn", "storage_bytes", "summarize",
           "variant_fields"]
