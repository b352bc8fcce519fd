# Qscrypt: `make run` starts the local stack, `make test` runs the test suite.
# Both work from a clean clone: the venv, Python packages and Debian packages are installed here.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# gcc, libssl-dev and python3.11-dev build mining/_hashes.c and mining/_scrypt.c (setup.py).
DEBIAN_PACKAGES := gcc libssl-dev python3.11-dev litecoind pocl-opencl-icd ocl-icd-libopencl1 openjdk-17-jre-headless maven openssl
# qemu-user runs the scrypt tests as CPUs without AVX-512 or AVX2 (tests/mining/test_scrypt.py).
DEBIAN_PACKAGES += qemu-user
# The third-party peers the tests run (../shared/peers): cpuminer and BFGMiner are built from source,
# the foundation-v2-litecoin pool with node-gyp; Debian's nodejs and npm only where no node and npm
# are on PATH already (a NodeSource nodejs, for one, conflicts with Debian's npm).
PEERS_SRC ?= ../shared/peers
DEBIAN_PACKAGES += automake autoconf libtool pkg-config make g++ python3 libcurl4-openssl-dev libjansson-dev uthash-dev
# Debian's chromium: the dashboard's browser tests drive it with Playwright (never a downloaded browser).
DEBIAN_PACKAGES += chromium
DEBIAN_PACKAGES += $(if $(and $(shell command -v node),$(shell command -v npm)),,nodejs npm)
# promtool (from prometheus) checks and unit-tests deploy/prometheus/ in tests/deploy.
DEBIAN_PACKAGES += prometheus
# Dogecoin Core (merged-mining tests), built without wallet or GUI.
DEBIAN_PACKAGES += build-essential autotools-dev bsdmainutils libevent-dev libboost-system-dev libboost-filesystem-dev libboost-chrono-dev libboost-program-options-dev libboost-test-dev libboost-thread-dev
# HAProxy in TCP mode in front of the proxies (PROXY protocol, several hosts): tests/services/haproxy.py.
DEBIAN_PACKAGES += haproxy

.PHONY: run test lint bench bench-bus kafka-jars kafka-dev peers system-deps venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py mining/_hashes.c mining/_scrypt.c mining/_scrypt.h | system-deps
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

system-deps:
	@missing=""; \
	for pkg in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing"; \
	    echo "install them with: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

run: system-deps $(STAMP)
	$(VENV)/bin/qscrypt $(if $(CONFIG),-c $(CONFIG)) run

test: system-deps $(STAMP) kafka-jars peers
	$(PY) -m pytest -q $(PYTEST_ARGS)

# cpuminer, BFGMiner, the foundation-v2-litecoin pool and Dogecoin Core, built once into ~/.cache/qscrypt-peers
# (idempotent). A failed build does not stop here: the tests that need the peer fail with the reason.
peers: system-deps
	-@for script in build-cpuminer.sh build-bfgminer.sh build-foundation-pool.sh build-dogecoind.sh; do \
	  bash $(PEERS_SRC)/$$script >/dev/null || echo "$$script failed: the tests that use it will say why"; \
	done

# The pinned Apache Kafka broker jars from Maven Central, cached outside the repo (idempotent).
kafka-jars: system-deps
	@tools/kafka/fetch-jars.sh >/dev/null

# A single-node KRaft broker on loopback for a newcomer (Ctrl-C stops it).
kafka-dev: system-deps $(STAMP) kafka-jars
	$(PY) -m qscrypt.devnet.kafka

bench-bus: system-deps $(STAMP) kafka-jars
	$(PY) -m bench.bus

# ruff; the layering as pyproject's import-linter contracts draw it; mypy --strict over the
# packages pyproject names (mining, proxy, the qscrypt library and the entry package).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: system-deps $(STAMP)
	$(PY) -m bench.scrypt

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
