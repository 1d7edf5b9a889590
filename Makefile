# The two README commands do all set-up: they create .venv and install the pinned set if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export JAX_PLATFORMS ?= cpu
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: demo test test-all lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The main job on its small embedded default: meta-train an LPO drift on CartPole where the drift
# matters (CPU, ~10 minutes on 2 cores), then train the learned drift, the shipped discovered drifts,
# PPO and DPO at the same budget on 16 fresh seeds, and print the table with a one-line reading.
demo: $(STAMP)
	$(BIN)/discovery meta-train --config configs/meta/cartpole_demo.yaml --compare --out demo_runs/meta_$$(date +%Y%m%d-%H%M%S)

# Two workers: most of a test's time is XLA compiling, which is single-threaded, so two processes keep two cores
# busy; a test file stays on one worker, so its module fixtures (a meta-training run, say) are built once.
TEST_WORKERS ?= 2

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile

# One style, enforced: ruff's lint rules and formatter (pyproject.toml [tool.ruff]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) demo_runs .pytest_cache
