"""`reco smoke` against a real service process: every check passes on a healthy service serving the version
expected, and each way of being wrong (another version in git, nothing listening, no known user) is one
`error:` line and exit 1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_scenario import REPO, ServiceProcess, World, build_world, running
from typer.testing import CliRunner

from reco.cli import app
from reco.gitops import Release, read_release, write_release
from reco.settings import Settings
from reco.smoke import metric_total

pytestmark = [pytest.mark.integration, pytest.mark.slow]

runner = CliRunner()


@pytest.fixture(scope="module")
def world_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(workdir=tmp_path_factory.mktemp("smoke") / "work")


@pytest.fixture(scope="module")
def world(world_settings: Settings) -> World:
    return build_world(world_settings, n_users=40, n_articles=300, factors=8)


@pytest.fixture(scope="module")
def service(world: World, world_settings: Settings) -> Iterator[ServiceProcess]:
    with running(world_settings.workdir, {"RECO_ONLINE_STORE": "sqlite"}) as process:
        yield process


def smoke(*args: str) -> tuple[int, list[str], list[str]]:
    """Exit code, the check lines (stdout) and the error lines (stderr)."""
    result = runner.invoke(app, ["smoke", *args])
    out = [line for line in result.stdout.splitlines() if line.strip()]
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code, out, errors


def test_a_healthy_service_serving_the_expected_version_passes(service: ServiceProcess, world: World) -> None:
    code, out, errors = smoke("--url", service.url, "--expect-version", world.version, "--user", world.user_ids[0])

    assert code == 0, out + errors
    assert errors == []
    assert [line.split()[:2] for line in out] == [
        ["ok", "readyz"], ["ok", "recommend-known"], ["ok", "recommend-unknown"], ["ok", "events"],
        ["ok", "model-version"],
    ]  # fmt: skip
    assert f"model {world.version}" in out[0]
    assert "reco_events_accepted_total" in out[3]


def test_the_version_git_says_must_serve(service: ServiceProcess, world: World, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    release = repo / "gitops" / "overlays" / "staging" / "release.yaml"
    release.parent.mkdir(parents=True)
    shutil.copy(REPO / "gitops" / "overlays" / "staging" / "release.yaml", release)
    text = release.read_text()
    release.write_text(write_release(text, Release(read_release(text).image_tag, "99")))

    code, out, errors = smoke("--url", service.url, "--env", "staging", "--repo", str(repo), "--user", world.user_ids[0])

    assert code == 1
    assert errors == [
        f"error: smoke model-version: expected 99: readyz says {world.version}, recommend-known says "
        f"{world.version}, recommend-unknown says {world.version}"
    ]
    assert [line.split()[0] for line in out] == ["ok", "ok", "ok", "ok", "failed"]


def test_without_a_known_user_that_check_fails_and_says_what_to_pass(service: ServiceProcess, tmp_path: Path) -> None:
    code, _, errors = smoke("--url", service.url, "--workdir", str(tmp_path / "empty"))

    assert code == 1
    assert errors == ["error: smoke recommend-known: no known user: pass --user ID (a user the model was trained on)"]


def test_the_known_user_comes_from_the_workdirs_newest_snapshot(
    service: ServiceProcess, world_settings: Settings
) -> None:
    code, out, errors = smoke("--url", service.url, "--workdir", str(world_settings.workdir))

    assert code == 0, out + errors
    assert out[-1].split()[:2] == ["skipped", "model-version"]


def test_nothing_listening_is_one_line(tmp_path: Path) -> None:
    from conftest import free_port

    code, out, errors = smoke("--url", f"http://127.0.0.1:{free_port()}", "--expect-version", "1", "--timeout", "2")

    assert code == 1
    assert len(errors) == 1 and errors[0].startswith("error: smoke readyz: GET http://127.0.0.1:")
    assert len(out) == 1


def test_metric_totals_sum_every_series_of_one_name() -> None:
    text = """# HELP reco_events_accepted_total Events acknowledged.
# TYPE reco_events_accepted_total counter
reco_events_accepted_total{variant="stable"} 3.0
reco_events_accepted_total{variant="canary"} 2.0
reco_events_accepted_created{variant="stable"} 1.7e9
reco_events_accepted_total_extra 100
reco_clicks_total 4
"""
    assert metric_total(text, "reco_events_accepted_total") == 5.0
    assert metric_total(text, "reco_clicks_total") == 4.0
    assert metric_total(text, "reco_reads_total") == 0.0
