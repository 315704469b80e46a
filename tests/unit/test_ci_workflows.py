"""The GitHub workflows, checked here without GitHub (actionlint cannot run on this machine: see the Makefile's
lint-ci): every action pinned by commit SHA, every `run:` step a make target or a script of this repository,
least-privilege permissions, OIDC through Workload Identity Federation and no key anywhere, prod behind an
approval. The checkers are shown to fail on what they must refuse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+)*\b")


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_name, step) for job_name, job in workflow["jobs"].items() for step in job.get("steps", [])]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w-]*):(?!=)", text, flags=re.MULTILINE)}


def unpinned(text: str) -> list[str]:
    """`uses:` lines whose action is not pinned by a full commit SHA with the version it stands for."""
    bad = []
    for line in text.splitlines():
        match = re.match(r"^\s*-?\s*uses:\s*(\S+)(.*)$", line)
        if match and not (PINNED.match(match.group(1).strip("'\"")) and VERSION_COMMENT.search(match.group(2))):
            bad.append(line.strip())
    return bad


def run_problems(command: str, targets: set[str]) -> list[str]:
    """What in a `run:` block is neither `make TARGET …` (a target of the Makefile) nor a script of the repository."""
    problems = []
    if "${{" in command:
        problems.append(f"expression inside run (pass it through env:): {command!r}")
    for line in filter(None, (raw.strip() for raw in command.splitlines())):
        words = shlex.split(line)
        if words and words[0] == "sudo":
            words = words[1:]
        if not words:
            problems.append(f"empty command: {line!r}")
        elif words[0] == "make":
            wanted = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
            problems += [f"no make target {t!r}: {line!r}" for t in wanted if t not in targets]
            if not wanted:
                problems.append(f"make without a target: {line!r}")
        elif words[0].startswith(("scripts/", ".ci/")):
            script = ROOT / words[0]
            if not (script.is_file() and script.stat().st_mode & 0o111):
                problems.append(f"no executable script {words[0]}: {line!r}")
        else:
            problems.append(f"neither a make target nor a script of the repository: {line!r}")
    return problems


@pytest.fixture(scope="module", params=["ci.yml", "release.yml"])
def workflow_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_both_workflows_exist_and_nothing_else_hides_there() -> None:
    assert sorted(p.name for p in WORKFLOWS.iterdir()) == ["ci.yml", "release.yml"]


def test_every_action_is_pinned_by_commit_sha_with_its_version(workflow_name: str) -> None:
    text = (WORKFLOWS / workflow_name).read_text()
    assert "uses:" in text
    assert unpinned(text) == []


def test_the_pin_check_refuses_tags_branches_and_short_shas() -> None:
    sample = """
      - uses: actions/checkout@v4
      - uses: aquasecurity/trivy-action@master
      - uses: actions/checkout@11bd719 # v4.2.2
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
    """
    assert len(unpinned(sample)) == 4  # the last one, SHA and version, is the only good one


def test_every_run_step_is_a_make_target_or_a_script_here(workflow_name: str) -> None:
    targets = make_targets()
    problems = []
    for job, step in steps(load(workflow_name)):
        assert ("run" in step) != ("uses" in step), f"{job}: a step either runs or uses: {step}"
        if "run" in step:
            problems += [f"{job}: {p}" for p in run_problems(step["run"], targets)]
    assert problems == []


def test_the_run_check_refuses_inline_commands_unknown_targets_and_expressions() -> None:
    targets = {"test"}
    assert run_problems("make test", targets) == []
    assert run_problems("sudo scripts/ci/google-cloud-apt.sh", targets) == []
    assert run_problems("make smoke", targets) == ["no make target 'smoke': 'make smoke'"]
    assert run_problems("pip install -r requirements.txt", targets)[0].startswith("neither a make target")
    assert run_problems("scripts/ci/nope.sh", targets) == ["no executable script scripts/ci/nope.sh: 'scripts/ci/nope.sh'"]
    assert run_problems('make test ARG="${{ github.head_ref }}"', targets)[0].startswith("expression inside run")


def test_ci_runs_the_gates_on_pull_requests_and_pushes() -> None:
    ci = load("ci.yml")
    assert set(ci["on"]) == {"pull_request", "push"}
    assert ci["permissions"] == {"contents": "read"}
    runs = {step["run"] for _, step in steps(ci) if "run" in step}
    assert {"make test", "make render-check", "make checkov", "make policy-test", "make lint-ci"} <= runs
    for job in ci["jobs"].values():
        assert "permissions" not in job  # nothing beyond reading the repository
        checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
        assert checkout["with"]["persist-credentials"] is False


def test_release_grants_each_job_only_what_it_does() -> None:
    release = load("release.yml")
    assert release["permissions"] == {}
    on = release["on"]
    assert on["push"]["branches"] == ["main"] and on["push"]["tags"] == ["v*"]
    for name, job in release["jobs"].items():
        granted = job.get("permissions", {})
        uses = [s.get("uses", "") for s in job["steps"]]
        runs = " ".join(s.get("run", "") for s in job["steps"])
        oidc = any(u.startswith("google-github-actions/auth@") for u in uses)
        assert (granted.get("id-token") == "write") == oidc, name
        assert (granted.get("contents") == "write") == ("release-commit.sh" in runs), name
        assert (granted.get("pull-requests") == "write") == (name == "prod"), name
        assert set(granted.values()) <= {"read", "write"}


def test_registry_access_is_workload_identity_federation_never_a_key() -> None:
    for name in ("ci.yml", "release.yml"):
        text = (WORKFLOWS / name).read_text()
        assert "credentials_json" not in text and "secrets." not in text, name
    auths = [s for _, s in steps(load("release.yml")) if s.get("uses", "").startswith("google-github-actions/auth@")]
    assert len(auths) == 2  # staging's push, prod's copy
    for auth in auths:
        assert set(auth["with"]) == {"workload_identity_provider", "service_account", "token_format"}
        assert auth["with"]["workload_identity_provider"].startswith("${{ vars.")


def test_images_are_scanned_and_given_an_sbom_before_anything_is_pushed() -> None:
    job = load("release.yml")["jobs"]["image"]
    order = [s.get("uses", s.get("run", "")).split("@")[0] for s in job["steps"]]
    build = order.index("docker/build-push-action")
    sbom, scan = (i for i, o in enumerate(order) if o == "aquasecurity/trivy-action")
    push = next(i for i, o in enumerate(order) if "push-image.sh" in o)
    assert build < sbom < scan < push
    steps_ = job["steps"]
    assert steps_[build]["with"]["push"] is False and steps_[build]["with"]["load"] is True
    assert "org.opencontainers.image.revision=${{ github.sha }}" in steps_[build]["with"]["labels"]
    assert steps_[build]["with"]["cache-from"].startswith("type=gha")
    assert steps_[sbom]["with"]["format"] == "cyclonedx"
    gate = steps_[scan]["with"]
    assert gate["severity"] == "HIGH,CRITICAL" and gate["exit-code"] == "1" and gate["trivyignores"] == ".trivyignore"
    built = {(i["dockerfile"], i["target"]) for i in job["strategy"]["matrix"]["include"]}
    assert built == {("Dockerfile", "runtime"), ("Dockerfile.pipeline", "cpu"), ("Dockerfile.pipeline", "gpu")}


def test_staging_is_a_commit_and_prod_a_pull_request_behind_an_approval() -> None:
    jobs = load("release.yml")["jobs"]
    staging, prod = jobs["staging"], jobs["prod"]
    assert staging["needs"] == "image"
    assert any(s.get("run") == 'scripts/ci/release-commit.sh staging "$IMAGE_TAG"' for s in staging["steps"])
    assert prod["needs"] == "staging" and prod["if"] == "github.ref_type == 'tag'"
    assert prod["environment"] == "prod"  # its required reviewers approve before the job runs
    assert any(s.get("run") == 'scripts/ci/release-commit.sh prod "$IMAGE_TAG"' for s in prod["steps"])
    script = (ROOT / "scripts" / "ci" / "release-commit.sh").read_text()
    assert "gitops promote --env" in script and "gh pr create" in script


def test_every_trivy_exception_is_reviewed_and_expires() -> None:
    """Each ignored finding has a comment above it (why, who reviewed it) and an expiry date."""
    lines = (ROOT / ".trivyignore").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert re.match(r"^(CVE|GHSA|AVD)-\S+ exp:\d{4}-\d{2}-\d{2}$", line), line
            assert i > 0 and lines[i - 1].startswith("# ") and "reviewed" in lines[i - 1], line
