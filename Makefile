# callsys — `make run`, `make demo` and `make test`. Each sets everything up first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/qingdao.toml
STORE  ?= file:var/callsys.db
HOST   ?= 127.0.0.1
PORT   ?= 8700
# Server clock: real time, or virtual time from a start in the hall's zone running SPEED x
# faster, e.g. `make run CLOCK=2026-11-23T09:05 SPEED=60` (a Monday, just after opening).
CLOCK  ?= real
SPEED  ?= 1
# Debian packages the tests and the voice need (installed when missing); fonts-noto-cjk:
# Chinese text in Chromium's page screenshots (without it, every character is a box).
APT_PACKAGES := redis-server espeak-ng chromium fonts-noto-cjk

# `make demo`: the flagship hall just before opening on a virtual clock, a weekday crowd
# playing live against it (callsys/tools/demo.py); DEMO_SPEED virtual seconds per real second.
DEMO_SPEED ?= 5

.PHONY: setup run demo test bench clean system-packages

setup: system-packages $(VENV)/.installed

# Installs missing Debian packages with apt-get as root; otherwise prints the exact command.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "missing system packages:$$missing"; \
	    echo "run:  sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	  echo "installing system packages:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found; install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

run: setup
	$(BIN)/callsys serve --config $(CONFIG) --store $(STORE) --host $(HOST) --port $(PORT) --clock $(CLOCK) --speed $(SPEED)

demo: setup
	$(BIN)/callsys demo --host $(HOST) --port $(PORT) --speed $(DEMO_SPEED)

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m benchmarks.engine

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
