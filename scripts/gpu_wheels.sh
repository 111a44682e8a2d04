#!/usr/bin/env bash
# Run HERE (a machine with PyPI access), before a session that has a GPU but no internet: puts
# into gpu-wheels/ (git-ignored; pass it to the GPU machine as a carried path, 64 MiB at most) the
# wheels that scripts/gpu_check.sh (the `gpu` tests, the CUDA benchmarks, the large tasks) needs
# beside the GPU machine's own torch and triton (never downloaded: the GPU build comes with them).
# omegaconf's antlr4-python3-runtime==4.9.3 has no wheel on PyPI: it is built with `pip wheel`.
# GPU_PYTHON_VERSION (default: this python's, e.g. 311) must match the GPU machine's python.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=/work/main/.venv/bin/python
version="${GPU_PYTHON_VERSION:-$("$python" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')}"
out=gpu-wheels
mkdir -p "$out"
# Pure-python or manylinux wheels, no dependencies resolved (that would pull torch): the list is
# what those commands import, closed over their own dependencies.
packages=(
    pytest pluggy iniconfig packaging pytest-timeout
    rich markdown-it-py mdurl pygments
    pytorch-lightning lightning-utilities torchmetrics fsspec pyyaml tqdm typing-extensions
    aiohttp aiohappyeyeballs aiosignal attrs frozenlist multidict propcache yarl idna  # fsspec[http]
    omegaconf numpy
    filelock espeakng-loader  # the ASR task's feature cache and built-in speech synthesis
)
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d "$out" "${packages[@]}"
"$python" -m pip wheel -q --no-deps -w "$out" antlr4-python3-runtime==4.9.3
printf '%s\n' "${packages[@]}" antlr4-python3-runtime > "$out/requirements.txt"
du -sh "$out"
