"""`reco gitops promote | revert | abort` on temporary git repositories: one commit touching only the release
file, prod on a branch for a pull request, and a clear error with nothing committed when it cannot be done."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reco.cli import app
from reco.gitops import GitOpsError, promote, read_release, revert

RELEASE = """\
# What serves in {env}: written by `reco gitops promote` / `reco gitops revert` only.
apiVersion: v1
kind: ConfigMap
metadata:
  name: reco-release
  annotations:
    config.kubernetes.io/local-config: "true"
data:
  image_tag: "0.1.0"
  model_version: "3"  # the registry version the Rollout serves
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "gitops-repo"
    for env in ("staging", "prod"):
        folder = root / "gitops" / "overlays" / env
        folder.mkdir(parents=True)
        (folder / "release.yaml").write_text(RELEASE.format(env=env))
        (folder / "kustomization.yaml").write_text("resources: [../../base]\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    git(root, "config", "user.email", "ci@example.com")
    git(root, "config", "user.name", "ci")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    return root


def changed_files(repo: Path, ref: str = "HEAD") -> list[str]:
    return git(repo, "show", "--name-only", "--format=", ref).splitlines()


def test_promote_staging_is_one_commit_of_the_release_file_only(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    commit = promote(repo, "staging", "7", image_tag="0.2.0", reason="ndcg@10 0.21 >= 0.19 x 1.01", run_date="2026-11-20")

    assert git(repo, "rev-parse", "HEAD^") == head and commit.branch == "main"
    assert changed_files(repo) == ["gitops/overlays/staging/release.yaml"]
    text = (repo / "gitops/overlays/staging/release.yaml").read_text()
    assert text == RELEASE.format(env="staging").replace('"0.1.0"', '"0.2.0"').replace('"3"  #', '"7"  #')
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith("release(staging): model version 7, image 0.2.0")
    assert "Gate: ndcg@10 0.21 >= 0.19 x 1.01" in message and "Run date: 2026-11-20" in message
    assert "Replaces model version 3" in message


def test_promote_prod_commits_on_a_new_branch_never_on_main(repo: Path) -> None:
    main = git(repo, "rev-parse", "main")
    commit = promote(repo, "prod", "7")
    assert git(repo, "rev-parse", "main") == main  # main untouched
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"  # and still checked out
    assert commit.branch.startswith("release/prod-")
    assert changed_files(repo, commit.branch) == ["gitops/overlays/prod/release.yaml"]
    assert read_release(git(repo, "show", f"{commit.branch}:gitops/overlays/prod/release.yaml")).model_version == "7"


def test_an_image_release_keeps_the_model_version_and_asks_no_registry(repo: Path, tmp_path: Path) -> None:
    """What the release workflow runs after a build: `reco gitops promote --env staging --image TAG`."""
    result = CliRunner().invoke(app, ["gitops", "promote", "--env", "staging", "--image", "sha-0123abc",
                                      "--reason", "release workflow", "--repo", str(repo),
                                      "--workdir", str(tmp_path / "no-registry")])  # fmt: skip

    assert result.exit_code == 0, result.output
    release = read_release((repo / "gitops/overlays/staging/release.yaml").read_text())
    assert (release.model_version, release.image_tag) == ("3", "sha-0123abc")
    assert changed_files(repo) == ["gitops/overlays/staging/release.yaml"]
    assert git(repo, "log", "-1", "--format=%s") == "release(staging): model version 3, image sha-0123abc"
    assert not (tmp_path / "no-registry").exists()  # no MLflow store was opened
    nothing = CliRunner().invoke(app, ["gitops", "promote", "--env", "staging", "--repo", str(repo)])
    assert nothing.exit_code == 1 and "nothing to release" in nothing.output


def test_revert_goes_back_to_the_previous_release(repo: Path) -> None:
    promote(repo, "staging", "7", image_tag="0.2.0")
    commit = revert(repo, "staging", why="canary aborted")
    release = read_release((repo / "gitops/overlays/staging/release.yaml").read_text())
    assert (release.model_version, release.image_tag) == ("3", "0.1.0")
    assert changed_files(repo) == ["gitops/overlays/staging/release.yaml"]
    assert git(repo, "log", "-1", "--format=%s") == "revert(staging): back to model version 3 (image 0.1.0)"
    assert commit.before.model_version == "7"
    assert git(repo, "rev-list", "--count", "HEAD") == "3"


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (lambda r: promote(r, "qa", "7"), "unknown environment 'qa'.*known: prod, staging"),
        (lambda r: promote(r, "staging", "3"), "already releases model version 3"),
        (lambda r: revert(r, "staging"), "no earlier release"),
    ],
    ids=["unknown-env", "no-change", "nothing-to-revert"],
)
def test_impossible_releases_commit_nothing(repo: Path, action, match: str) -> None:
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(GitOpsError, match=match):
        action(repo)
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""
    assert git(repo, "branch", "--list") == "* main"


def test_a_dirty_tree_is_refused(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    (repo / "gitops/overlays/staging/kustomization.yaml").write_text("resources: [../../base, extra.yaml]\n")
    with pytest.raises(GitOpsError, match="uncommitted changes"):
        promote(repo, "staging", "7")
    assert git(repo, "rev-parse", "HEAD") == head
    assert read_release((repo / "gitops/overlays/staging/release.yaml").read_text()).model_version == "3"


def test_the_cli_says_one_line_and_exits_1_on_an_unknown_environment(repo: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["gitops", "promote", "--env", "staging", "--model-version", "8", "--reason", "test",
                             "--run-date", "2026-11-21", "--repo", str(repo), "--workdir", str(tmp_path / "w")])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "model version 3 -> 8" in ok.output
    bad = runner.invoke(app, ["gitops", "revert", "--env", "qa", "--repo", str(repo)])
    assert bad.exit_code == 1
    assert next(line for line in bad.output.splitlines() if line.startswith("error:")).startswith(
        "error: unknown environment 'qa'"
    )


def test_abort_reverts_git_and_tells_the_registry_once(repo: Path, settings) -> None:
    """An aborted canary of version 3 -> 7: git back to 3, version 7 tagged canary=aborted, champion back to 3;
    a second delivery of the same notification changes nothing more."""
    from mlflow import MlflowClient

    from reco.gitops import abort
    from reco.registry import CHAMPION
    from reco.registry import promote as make_champion

    settings.mlflow_dir.mkdir(parents=True)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    client.create_registered_model(settings.model_name)
    for n in range(7):
        source = repo.parent / f"model-{n}"
        source.mkdir()
        client.create_model_version(settings.model_name, source=str(source))
    make_champion(settings, "3", reason="earlier")
    make_champion(settings, "7", reason="gate")
    promote(repo, "staging", "7")

    done = abort(settings, repo, "staging", "7")

    assert done.revert is not None and done.revert.after.model_version == "3"
    assert read_release((repo / "gitops/overlays/staging/release.yaml").read_text()).model_version == "3"
    tags = client.get_model_version(settings.model_name, "7").tags
    assert tags["canary"] == "aborted" and tags["canary.aborted_in"] == "staging"
    assert str(client.get_model_version_by_alias(settings.model_name, CHAMPION).version) == "3"
    assert done.champion == "champion rolled back 7 -> 3"

    commits = git(repo, "rev-list", "--count", "HEAD")
    again = abort(settings, repo, "staging", "7")
    assert again.revert is None and git(repo, "rev-list", "--count", "HEAD") == commits
    assert again.champion == "champion stays 3"


@pytest.fixture
def origin(repo: Path, tmp_path: Path) -> str:
    """A bare repository holding ``repo``'s history, as the GitOps remote a pod clones by URL."""
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    return f"file://{bare}"


def test_a_url_is_cloned_committed_and_pushed(origin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a pod does (no checkout of its own): clone the URL, one commit, push; the clone is removed."""
    bare = Path(origin.removeprefix("file://"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "reco")  # as in a pod: no global git identity needed
    runner = CliRunner()
    staged = runner.invoke(app, ["gitops", "promote", "--env", "staging", "--model-version", "8", "--reason", "test",
                                 "--run-date", "2026-11-21", "--repo", origin, "--workdir", str(tmp_path / "w")])  # fmt: skip
    assert staged.exit_code == 0, staged.output
    assert "pushed main" in staged.output
    assert git(bare, "log", "-1", "--format=%s", "main").startswith("release(staging)") or "8" in git(
        bare, "log", "-1", "--format=%s", "main"
    )
    assert read_release(git(bare, "show", "main:gitops/overlays/staging/release.yaml")).model_version == "8"

    prod = runner.invoke(app, ["gitops", "promote", "--env", "prod", "--model-version", "8", "--reason", "test",
                               "--run-date", "2026-11-21", "--repo", origin, "--workdir", str(tmp_path / "w")])  # fmt: skip
    assert prod.exit_code == 0, prod.output
    (branch,) = [b.strip() for b in git(bare, "branch", "--list", "release/prod-*").splitlines()]
    assert read_release(git(bare, "show", f"{branch}:gitops/overlays/prod/release.yaml")).model_version == "8"
    # prod's main is untouched: the change waits for a pull request of the pushed branch.
    assert read_release(git(bare, "show", "main:gitops/overlays/prod/release.yaml")).model_version == "3"

    back = runner.invoke(app, ["gitops", "revert", "--env", "staging", "--repo", origin])
    assert back.exit_code == 0, back.output
    assert read_release(git(bare, "show", "main:gitops/overlays/staging/release.yaml")).model_version == "3"


def test_a_url_that_cannot_be_cloned_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["gitops", "revert", "--env", "staging", "--repo", f"file://{tmp_path}/none.git"])
    assert result.exit_code == 1
    assert any(line.startswith("error: cannot clone file://") for line in result.output.splitlines()), result.output
