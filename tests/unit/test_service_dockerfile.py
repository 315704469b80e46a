"""The service image, checked by reading its Dockerfile (no Docker engine here to build it)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM it belongs to


def parse(text: str) -> tuple[list[Instruction], dict[str, str]]:
    """Instructions (continuations joined, comments dropped) and the global ARG defaults."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    instructions: list[Instruction] = []
    args: dict[str, str] = {}
    stage = -1
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        if keyword == "ARG" and stage == -1 and "=" in rest:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip()
        instructions.append(Instruction(keyword, rest.strip(), stage))
    return instructions, args


@pytest.fixture(scope="module")
def dockerfile() -> tuple[list[Instruction], dict[str, str]]:
    return parse((ROOT / "Dockerfile").read_text())


def _expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), value)


def test_multi_stage_with_pinned_bases(dockerfile: tuple[list[Instruction], dict[str, str]]) -> None:
    instructions, args = dockerfile
    images = [_expand(i.args.split()[0], args) for i in instructions if i.keyword == "FROM"]
    assert len(images) >= 3  # uv, build, runtime
    for image in images:
        name, _, tag = image.partition("@")[0].rpartition(":")
        pinned_digest = "@sha256:" in image
        assert pinned_digest or (name and re.fullmatch(r"\d+\.\d+(\.\d+)?([-.\w]*)", tag)), f"unpinned base image {image}"
        assert tag != "latest"


def test_only_the_serve_extra_from_the_lock(dockerfile: tuple[list[Instruction], dict[str, str]]) -> None:
    instructions, _ = dockerfile
    syncs = [i.args for i in instructions if i.keyword == "RUN" and "uv sync" in i.args]
    assert syncs
    for command in syncs:
        words = shlex.split(command[command.index("uv sync") :])
        assert "--frozen" in words and "--no-dev" in words
        extras = [words[k + 1] for k, w in enumerate(words) if w == "--extra"]
        assert extras == ["serve"], command
        assert "--all-extras" not in words and "--dev" not in words
    assert not any(i.keyword == "RUN" and "pip install" in i.args for i in instructions)


def test_runtime_stage_runs_as_non_root_with_a_healthcheck(dockerfile: tuple[list[Instruction], dict[str, str]]) -> None:
    instructions, _ = dockerfile
    last = max(i.stage for i in instructions)
    runtime = [i for i in instructions if i.stage == last]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = [i.args for i in runtime if i.keyword == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0] and "CMD" in health[0]
    # The runtime stage gets the built venv, not the build toolchain.
    assert not any(i.keyword == "RUN" and "uv " in i.args for i in runtime)
    assert any(i.keyword == "COPY" and "--from=build" in i.args and ".venv" in i.args for i in runtime)


def test_configuration_comes_from_the_environment(dockerfile: tuple[list[Instruction], dict[str, str]]) -> None:
    instructions, _ = dockerfile
    cmd = [i.args for i in instructions if i.keyword == "CMD" and i.stage == max(j.stage for j in instructions)]
    assert cmd and cmd[-1].replace(" ", "") == '["python","-m","services.recommend"]'  # no baked-in options
    env = " ".join(i.args for i in instructions if i.keyword == "ENV")
    for secretish in ("PASSWORD", "TOKEN", "SECRET", "TRACKING_URI=", "REDIS_URL="):
        assert secretish not in env.upper(), f"{secretish} must come from the deployment, not the image"
    # The module it runs reads RECO_HOST/RECO_PORT/RECO_WORKERS, set here as overridable defaults.
    for name in ("RECO_HOST", "RECO_PORT", "RECO_WORKERS", "RECO_ENVIRONMENT"):
        assert name in env
    main = (ROOT / "services" / "recommend" / "__main__.py").read_text()
    assert all(f'"{name}"' in main for name in ("RECO_HOST", "RECO_PORT", "RECO_WORKERS", "RECO_WORKDIR"))


def test_dockerignore_keeps_the_context_small_and_clean() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".reco", "tests", "mlruns"} <= ignored
    for needed in ("src", "services", "feature_repo", "pyproject.toml", "uv.lock", "README.md"):
        assert needed not in ignored
