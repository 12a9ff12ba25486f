# restem: two commands on a fresh machine.
#   make demo   install everything, build the model cache, run base evaluation + 2 ReST^EM iterations
#   make test   install everything, run the whole test suite (slow tests included)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: setup system model demo demo-code estep ui serve test test-fast bench gpu-tokenizer clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel from local disk.
# The `ray` extra (Ray, dagster-ray, dagster-k8s, s3fs, moto) is installed too, so CI tests scale-out.
# Then the vLLM build for this host (scripts/install_vllm.sh; RESTEM_SKIP_VLLM=1 skips it).
$(VENV)/.installed: pyproject.toml setup.py scripts/install_vllm.sh | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,ray]'
	bash scripts/install_vllm.sh $(BIN)/python
	touch $@

system:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/setup_system.sh; \
	else echo "not root: skipping system packages (bubblewrap); the code sandbox falls back to rlimits"; fi

setup: system $(VENV)/.installed

model: setup
	$(BIN)/python -m restem_assets.models.model_cache

demo: model
	$(BIN)/restem run --iterations 2

# Code ReST^EM on the procedural function-synthesis task, in its own data root and instance:
# base eval + 2 iterations, then each policy on HumanEval (transfer), then per-level and failure-kind tables.
CODE := --profile code --data-root data/code --dagster-home data/code/dagster_home
demo-code: model
	$(BIN)/restem run $(CODE) --iterations 2
	$(BIN)/restem transfer $(CODE)
	$(BIN)/restem sql greedy_by_level --data-root data/code
	$(BIN)/restem sql reward_reasons --data-root data/code

estep: model
	$(BIN)/restem estep --iteration 1

ui: setup
	$(BIN)/restem ui

serve: model
	$(BIN)/restem serve

test: model
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: model
	$(BIN)/python -m bench

# The embedded model's tokenizer for bench/gpu.sh (the device machine has no model cache; carry bench/gpu_tokenizer).
gpu-tokenizer: model
	mkdir -p bench/gpu_tokenizer
	cp "$$($(BIN)/python -c 'from restem_assets.models.model_cache import ensure_default_model as m; print(m())')"/{tokenizer.json,tokenizer_config.json,chat_template.jinja} bench/gpu_tokenizer/

clean:
	rm -rf data/dagster_home data/problems data/samples data/rewards data/sft_set data/finetune_log \
	       data/evaluations data/eval_samples data/reward_audit data/rescores \
	       data/transfer_evaluations data/transfer_samples \
	       data/human_sft_set data/human_finetune_log data/human_eval_samples data/human_evaluations \
	       data/stage_costs data/experiments data/models data/reports data/.staging data/.locks \
	       data/experiment=* data/code
