# o16n: `make run` starts the one-box server; `make test` sets everything up and runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.stamp-install
RSTAMP := $(VENV)/.stamp-r
# Microsoft's Python client (azureml-model-management-sdk) in its own virtualenv: it needs Python <= 3.11.
MSCLIENT_PYTHON ?= python3.11
MSCLIENT := .venv-msclient/.stamp
# The field `make bench` compares against (MLflow's scoring server, Jupyter Kernel Gateway), in its own virtualenv.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.stamp

.DEFAULT_GOAL := all
.PHONY: bench-memory all run test shell-venv install install-r msclient services protos check-protos lint format typecheck bench bench-realtime bench-runtimes clean deploy-lint certs bench-cluster bench-pools bench-grpc

all: lint typecheck test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(STAMP)

# R from Debian packages, then rpy2 built against it (pinned: rpy2 >= 3.6.6 needs R >= 4.5).
$(RSTAMP): $(STAMP)
	scripts/install-r.sh required
	$(PIP) install -q 'rpy2' 'rpy2-rinterface<3.6.6'
	touch $@

install-r: $(RSTAMP)

$(MSCLIENT):
	$(MSCLIENT_PYTHON) -m venv .venv-msclient
	.venv-msclient/bin/pip install -q 'azureml-model-management-sdk==1.0.1b6.post1'
	touch $@

msclient: $(MSCLIENT)

# Never fails: without network the bench runs without them and its table says "not installed";
# the stamp is written only when both installed, so the next `make bench` tries again.
$(BENCH_STAMP):
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q 'mlflow-skinny==3.17.2' 'pandas==3.1.1' && ok=1 || ok=0; \
	$(BENCH_VENV)/bin/pip install -q 'jupyter_kernel_gateway==3.0.1' 'ipykernel==7.4.0' || ok=0; \
	if [ $$ok = 1 ]; then touch $@; else echo "bench: MLflow or Kernel Gateway not installed (no network?)"; fi

# make run: R where it can be installed, else Python only (/status says so).
run: $(STAMP)
	@scripts/install-r.sh optional && { test -f $(RSTAMP) || { $(PIP) install -q 'rpy2' 'rpy2-rinterface<3.6.6' && touch $(RSTAMP); } || true; } || true
	$(VENV)/bin/o16n onebox

services:
	scripts/ensure-services.sh

# A virtualenv `nobody` can run shells with (tests of O16N_SHELL_RUN_AS_USER / _UIDS): built once
# under /var/cache/o16n-tests from /usr/bin/python3, the project copied in again when it changes.
shell-venv: $(RSTAMP)
	$(PY) -m tests.shell_venv

test: $(RSTAMP) $(MSCLIENT) services check-protos shell-venv
	scripts/install-slapd.sh
	scripts/install-nginx.sh
	$(PY) -m pytest $(PYTEST_ARGS)

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

# Regenerate into a scratch copy and fail when the committed code differs.
check-protos: $(STAMP)
	@tmp=$$(mktemp -d) && cp -r common protos scripts $$tmp/ && cd $$tmp && $(CURDIR)/$(PY) scripts/gen_protos.py \
	  && diff -r $(CURDIR)/common/pb $$tmp/common/pb -x __pycache__ >/dev/null \
	  || { echo "common/pb is stale: run 'make protos' and commit the result" >&2; exit 1; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(RSTAMP) $(BENCH_STAMP) services
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(PY) -m tests.bench $(BENCH_ARGS)

# RSS of the web node, compute node and shells idle, then after 1,000 services, 100 sessions
# and 1,000,000 consumptions (shell recycling and caches keep them flat); about 8 minutes.
bench-memory: $(STAMP) services
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(PY) -m tests.bench.memory

# Realtime (ONNX) services against onnxruntime in a bare handler and a standard Python service.
bench-realtime: $(STAMP) services
	$(PY) -m tests.bench.realtime

# One web-to-compute Call round trip, gRPC's default experiments against O16N_GRPC_EXPERIMENTS'.
bench-grpc: $(STAMP)
	$(PY) -m tests.bench.grpc_roundtrip

# R vs Python shells: x + y p50/p99, 10,000-row data.frame round trip, shell cold start.
bench-runtimes: $(RSTAMP) services
	$(PY) -m tests.bench.runtimes

# Shell cold start (Python, R) and pool acquire/release overhead, on real shells.
bench-pools: $(RSTAMP)
	$(PY) scripts/bench_pools.py

# Self-signed CA and certificates for HTTPS and web<->compute mutual TLS (README, "Cluster").
CERT_HOSTS ?=
certs: $(STAMP)
	$(VENV)/bin/o16n admin certs --out certs $(foreach h,$(CERT_HOSTS),--host $(h))

# Throughput with 1 and 2 compute nodes, and time to route around a killed node (same machine).
bench-cluster: $(STAMP) services
	$(PY) -m tests.bench_cluster

# docker-compose.yml, deploy/ Dockerfiles, nginx.conf and Kubernetes manifests (no Docker engine needed):
# docker-compose config, hadolint, kubernetes-validate (from the dev extras) and nginx -t (Debian's nginx).
deploy-lint: $(STAMP)
	scripts/install-nginx.sh
	$(PY) -m pytest tests/test_deploy.py -q

clean:
	rm -rf $(VENV) $(BENCH_VENV) .o16n build *.egg-info .pytest_cache .mypy_cache .ruff_cache
