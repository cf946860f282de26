# Sluice: the two commands a newcomer needs are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LOCAL := $(CURDIR)/.local
export KUBECONFIG ?= $(LOCAL)/kubeconfig
# Binaries built by hack/cluster/build.sh (kubectl, helm, kwokctl...) come first on PATH.
WITH_BIN = PATH="$$(hack/cluster/build.sh | tail -n 1):$$PATH"

.PHONY: venv binaries cluster-up cluster-down image node-up node-down crds crds-install run demo demo-down test test-unit \
	test-e2e lint bench bench-scale fuzz clean flux flux-up flux-down

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

binaries:  ## build the control plane, kubectl and helm from the Go module proxy (cached)
	hack/cluster/build.sh

cluster-up: venv  ## local kube-apiserver + kwok, Prometheus and the traffic simulator on 127.0.0.1
	hack/cluster/up.sh

cluster-down:  ## stops the cluster, and the real node first if it runs
	hack/cluster/down.sh

image:  ## the operator image and the pause image, built with podman from a Debian base (no registry; cached)
	hack/node/image.sh

node-up: cluster-up image  ## a real node, sluice-real-0: containerd + the pinned kubelet in namespaces of their own (root)
	hack/node/up.sh

node-down:
	hack/node/down.sh

flux:  ## build Flux's source-controller and kustomize-controller from the Go module proxy (cached)
	hack/flux/build.sh

flux-up: cluster-up crds-install flux  ## Flux's CRDs, controllers and a Git server on 127.0.0.1 (hack/flux/up.sh)
	hack/flux/up.sh

flux-down:  ## stops what flux-up started (make cluster-down does too)
	hack/flux/down.sh

crds: venv  ## regenerate crds/ from the pydantic models
	$(PY) -m sluice.api.crdgen

crds-install: venv
	$(WITH_BIN) kubectl apply --server-side --force-conflicts -f crds/
	@# kubectl wait fails at once on a CRD created a moment ago (no conditions yet): ask again
	@for attempt in $$(seq 1 30); do $(WITH_BIN) kubectl wait --for condition=established --timeout=60s -f crds/ \
		&& exit 0; sleep 1; done; exit 1

run: venv crds-install  ## the operator in the foreground against $KUBECONFIG, all namespaces
	$(VENV)/bin/sluice operator

demo: cluster-up crds-install  ## the local cluster, the operator and a Release walking its steps
	$(WITH_BIN) $(PY) hack/demo.py

demo-down:  ## stops the operator `make demo` left running (the cluster stays up)
	@if [[ -f $(LOCAL)/operator.pid ]]; then kill "$$(cat $(LOCAL)/operator.pid)" 2>/dev/null \
		&& echo "[demo-down] stopped the demo's operator"; rm -f $(LOCAL)/operator.pid; fi

test-unit: venv
	$(VENV)/bin/pytest -q tests/unit

# The real node needs root; without it, its tests skip and say so.
REAL_NODE := $(if $(filter 0,$(shell id -u)),node-up)
# The e2e tests run their own operator: the demo's would act on their Releases too.
test-e2e: cluster-up crds-install flux $(REAL_NODE) demo-down
	$(WITH_BIN) $(VENV)/bin/pytest -q tests/e2e

lint: venv
	$(VENV)/bin/ruff check operator tests hack
	$(VENV)/bin/mypy operator/sluice
	$(VENV)/bin/lint-imports

test: lint test-unit test-e2e  ## everything CI runs; leaves the cluster up (make cluster-down)

# The model-based test of the decision loop (tests/unit/test_model.py) as a long soak: random
# seeds, FUZZ_EXAMPLES examples (default 100000). It prints the seed and the examples run;
# SEED=<n> make fuzz replays a run.
fuzz: venv
	@seed=$${SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; echo "make fuzz: seed $$seed (SEED=$$seed make fuzz replays it)"; \
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100000} $(VENV)/bin/pytest -q -s tests/unit/test_model.py \
		-k decision_loop --hypothesis-seed=$$seed

bench: venv
	$(VENV)/bin/python hack/bench/planner.py

# Sluice at scale on the local cluster, with an operator, a namespace and a kwok node of its own
# (hack/bench/scale.py --help); it waits for the e2e lock, as the cluster takes one such user at a
# time. SCALE_ARGS="--releases 1000 --inflight 200" make bench-scale
bench-scale: cluster-up crds-install demo-down
	$(WITH_BIN) flock -o /tmp/sluice-e2e.lock $(PY) hack/bench/scale.py $(SCALE_ARGS)

clean: cluster-down
	rm -rf $(LOCAL)
