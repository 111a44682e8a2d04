#!/usr/bin/env bash
# Run on a GPU machine without internet, from the repository root, with gpu-wheels/ (made by
# scripts/gpu_wheels.sh) carried along: installs from it whatever the machine's python lacks,
# then runs the tests marked `gpu` (optimizers; each task in bf16-mixed), the CUDA optimizer benchmark and, for each
# task's large size, optbench train against a bare loop (the GPU throughput of each large task),
# writing everything under $OUT (default gpu-results/): env.txt, pytest_gpu.txt, bench_cuda.md,
# harness_<task>.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
out="${OUT:-gpu-results}"
mkdir -p "$out"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$python" -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'
} > "$out/env.txt" 2>&1
# Only what is missing: pip takes installed versions as satisfied and looks nowhere but gpu-wheels/.
"$python" -m pip install -q --no-index --find-links gpu-wheels -r gpu-wheels/requirements.txt \
    > "$out/install.txt" 2>&1 || { echo "gpu_check: install failed (see $out/install.txt)" >&2; exit 1; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OPTBENCH_TEST_GPU=1 timeout 300 "$python" -m pytest -m gpu tests/optimizers tests/experiments/test_gpu_training.py \
    -q -p no:cacheprovider \
    > "$out/pytest_gpu.txt" 2>&1
status=$?
echo "pytest -m gpu: exit $status" >> "$out/env.txt"
timeout 240 "$python" -m experiments.cli bench optimizers --device cuda --rounds 3 --steps 20 --warmup 3 \
    --markdown > "$out/bench_cuda.md" 2>&1
echo "bench: exit $?" >> "$out/env.txt"
for task in vision lm asr; do
    timeout 150 "$python" -m experiments.cli bench harness --rounds 1 task="$task" size=large \
        trainer.accelerator=gpu trainer.precision=bf16-mixed trainer.max_steps=60 data.num_workers=4 \
        > "$out/harness_$task.txt" 2>&1
    echo "harness $task: exit $?" >> "$out/env.txt"
done
exit "$status"
