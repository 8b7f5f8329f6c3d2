#!/usr/bin/env bash
# GPU readiness check (issue 14, point 5): about 5 minutes on one GPU. Run from the repository root:
#   bash bench/gpu_check.sh            # on a GPU machine (CPU fallback: tiny sizes, to test the script)
#   bash bench/gpu_check.sh --dry-run  # print what would run, run nothing expensive
# Environment: GPU_CHECK_OUT (output folder, default gpu_check_out), GPU_CHECK_DATASET (default
# fashion_mnist if its files are there, else digits; cifar10 needs its files under the default data root).
# Prints, and writes under GPU_CHECK_OUT:
#  1. host-device synchronisations in 20 training steps (torch.cuda.set_sync_debug_mode "warn"):
#     fixmatch and fixmatch+meta_semi, fp32 and bf16 (expected: none from the step path);
#  2. python -m bench.perf on WRN-28-2 at FixMatch's paper batch (64 labeled + 448 unlabeled):
#     fixmatch, fixmatch+meta_semi (fd, jvp), pseudo_label+l2rw, as paired ratios with intervals;
#     ms/step gives steps/s = 1000 / ms;
#  3. end-to-end engine steps/s (train_run, evaluations included) of fixmatch and fixmatch+meta_semi,
#     fp32 and bf16;
#  4. nvidia-smi utilisation sampled every 500 ms during 2-3 (nvidia_smi.csv and its mean);
#  5. with two or more GPUs: steps/s of 1 vs 2 Ray Train workers (python -m bench.run --workers).
set -euo pipefail

DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
OUT=${GPU_CHECK_OUT:-gpu_check_out}
PY=${PYTHON:-python}
mkdir -p "$OUT"

if $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVICE=cuda; NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
  LAB=64; UNL=448; STEPS=30; WARM=5; NET=wrn28_2; E2E_STEPS=300
else  # CPU fallback: the same commands at toy sizes, so the script itself is tested anywhere
  DEVICE=cpu; NGPU=0
  LAB=8; UNL=16; STEPS=3; WARM=1; NET=cnn_small; E2E_STEPS=6
fi
if [[ -n "${GPU_CHECK_DATASET:-}" ]]; then
  DATA=$GPU_CHECK_DATASET
elif $PY -c "import datasets, sys; datasets.check_available('fashion_mnist')" 2>/dev/null && [[ $DEVICE == cuda ]]; then
  DATA=fashion_mnist
else
  DATA=digits
fi
echo "gpu_check: device $DEVICE ($NGPU GPUs), dataset $DATA, network $NET, batch $LAB + $UNL, output $OUT"

run() {  # print a command, run it unless --dry-run
  echo "+ $*"
  [[ $DRY == 1 ]] || "$@"
}

SMI_PID=""
if [[ $DEVICE == cuda && $DRY == 0 ]] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
    > "$OUT/nvidia_smi.csv" &
  SMI_PID=$!
  trap '[[ -n "$SMI_PID" ]] && kill "$SMI_PID" 2>/dev/null || true' EXIT
fi

echo "== 1. synchronisations in the training step"
run $PY - "$DEVICE" "$DATA" "$NET" "$LAB" "$UNL" <<'EOF'
import sys, warnings
import torch
from bench.config import RunConfig, RunEnv
from bench.engine import build_run
device, data, net, lab, unl = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
for algo in ("fixmatch", "fixmatch+meta_semi"):
    for precision in ("fp32", "bf16"):
        cfg = RunConfig(dataset=data, algorithm=algo, network=net, n_labels=100, steps=1000, batch_labeled=lab,
                        batch_unlabeled=unl, precision=precision).resolved()
        run = build_run(cfg, RunEnv(results_dir=""), device=device)
        for i in range(3):  # warm-up: lazy initialisation may synchronise once
            run.algo.train_step(run.next_batch(), i, run.stepper)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            for i in range(3, 23):
                run.algo.train_step(run.next_batch(), i, run.stepper)
                run.eval_ema.update(run.model)
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("default")
        syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
        print(f"{algo:20s} {precision}: {len(syncs)} synchronising calls in 20 steps", *sorted(set(syncs))[:3], sep="\n  ")
EOF

echo "== 2. paired ratios (bench.perf)"
run $PY -m bench.perf --device "$DEVICE" --dataset "$DATA" --network "$NET" --n-labels 100 \
  --batch-labeled "$LAB" --batch-unlabeled "$UNL" --steps "$STEPS" --warmup "$WARM" \
  --algorithms fixmatch+meta_semi,pseudo_label+l2rw --out "$OUT/perf.csv"

echo "== 3. end-to-end steps/s (bench.engine.train_run)"
run $PY - "$DEVICE" "$DATA" "$NET" "$LAB" "$UNL" "$E2E_STEPS" <<'EOF'
import sys
from bench.config import RunConfig, RunEnv
from bench.engine import train_run
device, data, net, lab, unl, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
for algo in ("fixmatch", "fixmatch+meta_semi"):
    for precision in ("fp32", "bf16"):
        cfg = RunConfig(dataset=data, algorithm=algo, network=net, n_labels=100, steps=steps, eval_every=steps,
                        batch_labeled=lab, batch_unlabeled=unl, precision=precision, n_test=1000)
        out = train_run(cfg, RunEnv(results_dir=""), device=device, write=False)
        print(f"{algo:20s} {precision}: {out.run_row['steps_per_s']:.2f} steps/s over {steps} steps ({out.status})")
EOF

if [[ -n "$SMI_PID" ]]; then
  kill "$SMI_PID" 2>/dev/null || true; SMI_PID=""
  echo "== 4. GPU utilisation during 2-3 (nvidia-smi, every 500 ms)"
  awk -F', ' '{u[$2] += $3; n[$2]++} END {for (g in u) printf "GPU %s: mean utilisation %.0f%% over %d samples\n", g, u[g] / n[g], n[g]}' \
    "$OUT/nvidia_smi.csv"
fi

if [[ $NGPU -ge 2 ]]; then
  echo "== 5. Ray Train: 1 vs 2 workers (fixmatch, $E2E_STEPS steps)"
  for W in 1 2; do
    run $PY -m bench.run --suite quick --algorithms fixmatch --datasets "$DATA" --labels 100 --seeds 1 \
      --network "$NET" --steps "$E2E_STEPS" --workers "$W" --gpus-per-worker 1 --results-dir "$OUT/ray_w$W"
  done
  [[ $DRY == 1 ]] || $PY -c "
from results import ResultStore
for w in (1, 2):
    r = ResultStore('$OUT/ray_w%d' % w).load_runs()
    print(f'{w} worker(s): {float(r[\"steps_per_s\"].iloc[0]):.2f} steps/s ({r[\"status\"].iloc[0]})')"
else
  echo "== 5. Ray Train 1 vs 2 workers: skipped ($NGPU GPUs here)"
fi
