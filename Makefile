# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check unit bench profile timeline soak system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pos demo

# Debian packages some tests use (systemd-analyze, openssl, ssh server for SFTP);
# installed only when missing and when we may (root with apt-get).
system-deps:
	@bash tests/system-deps.sh

# The design held by tools: import contracts (pyproject [tool.importlinter]),
# a strict type checker over pos/ and devices/, and ruff. Each fails the build.
check: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/ruff check pos devices tests

test: check system-deps
	$(BIN)/python -m pytest

# The pure layer alone: no sockets, no sleeps, seconds.
unit: $(STAMP)
	$(BIN)/python -m pytest -m unit

# Speed figures beside their floors, measured in the same run (README "Performance"); prints the
# table and writes .pos-state/bench.json. Sizes pass through as variables for a quick look, e.g.
# make bench BENCH_SALES=200 BENCH_UNKNOWN=20 BENCH_JOURNAL_SALES=20000 BENCH_ONLY=sales,startup
# (python -m tests.bench --help lists them all). The large journal is built once and cached.
bench: $(STAMP)
	$(BIN)/python -m tests.bench

# Where a sale's time goes inside `pos run`: py-spy samples the daemon during PROFILE_SALES benchmark
# sales; prints CPU per sale by thread and the busiest functions on the sale's path (README "Performance").
PROFILE_SALES ?= 2000
profile: $(STAMP)
	@[ -x $(BIN)/py-spy ] || $(BIN)/pip install --quiet -e '.[profile]'
	$(BIN)/python -m tests.bench_profile --sales $(PROFILE_SALES)

# A paid sale's steps inside `pos run` in time order (each step's start, end and thread, the daemon
# timed by a hook on its PYTHONPATH for this run only), beside the floor's pieces (README "Performance").
TIMELINE_SALES ?= 1000
TIMELINE_PATH ?= sale
timeline: $(STAMP)
	$(BIN)/python -m tests.bench_timeline --sales $(TIMELINE_SALES) --path $(TIMELINE_PATH)

# The full soak: sales and refunds through a fault proxy to the sandbox with random faults,
# first through the payment runner, then through `pos run` as a process SIGKILLed at random
# moments; compared with the ledger and the printer; prints README's "Reliability and security" table.
SOAK_SALES ?= 10000
SOAK_REFUNDS ?= 1000
SOAK_FAULT_RATE ?= 0.05
SOAK_DAEMON_SALES ?= 1000
SOAK_DAEMON_REFUNDS ?= 100
SOAK_KILL_RATE ?= 0.05
soak: $(STAMP)
	$(BIN)/python -m tests.soak --sales $(SOAK_SALES) --refunds $(SOAK_REFUNDS) --fault-rate $(SOAK_FAULT_RATE) \
	    --daemon-sales $(SOAK_DAEMON_SALES) --daemon-refunds $(SOAK_DAEMON_REFUNDS) --kill-rate $(SOAK_KILL_RATE)

clean:
	rm -rf $(VENV) .pos-state .pytest_cache .hypothesis
