"""The pipeline image (targets cpu and gpu), checked by reading Dockerfile.pipeline: no Docker engine
here can build it. What the workflow relies on — uid, read-only root, workdir mount — is compared with
the rendered workflow and platform.yaml rather than restated."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.pipeline"
GPU_REQUIREMENTS = ROOT / "requirements" / "pipeline-gpu.txt"
RUNTIME_STAGES = {"cpu": "build-cpu", "gpu": "build-gpu"}  # final stage -> the stage that builds its venv
BUILD_TOOLS = re.compile(r"\b(uv|pip|gcc|g\+\+|cc|clang|make|cmake|ninja|nvcc|build-essential|git)\b")


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: str  # name of the FROM it belongs to ("" before the first)


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    args: dict[str, str]  # global ARG defaults
    bases: dict[str, str]  # stage name -> base image, ARGs expanded

    def stage(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.stage == name]

    def env(self, stage: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for i in self.stage(stage):
            if i.keyword == "ENV":
                env |= dict(word.split("=", 1) for word in shlex.split(i.args))
        return env


def parse(text: str) -> Dockerfile:
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not current and not line):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    instructions: list[Instruction] = []
    args: dict[str, str] = {}
    bases: dict[str, str] = {}
    stage = ""
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            stage = name.strip() or image.strip()
            bases[stage] = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image.strip())
        elif keyword == "ARG" and not stage and "=" in rest:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip().strip('"')
        instructions.append(Instruction(keyword, rest.strip(), stage))
    return Dockerfile(instructions, args, bases)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE.read_text())


def uv_syncs(dockerfile: Dockerfile, stage: str) -> list[list[str]]:
    return [
        shlex.split(i.args[i.args.index("uv sync") :].split("&&")[0])
        for i in dockerfile.stage(stage)
        if i.keyword == "RUN" and "uv sync" in i.args
    ]


def workflow_security_context() -> dict[str, object]:
    template = yaml.safe_load((ROOT / "gitops" / "workflows" / "reco-pipeline.yaml").read_text())
    return dict(template["spec"]["securityContext"])


def test_targets_cpu_and_gpu_are_multi_stage_on_pinned_bases(dockerfile: Dockerfile) -> None:
    assert {"cpu", "gpu", "build-cpu", "build-gpu"} <= set(dockerfile.bases)
    for stage, image in dockerfile.bases.items():
        assert "$" not in image, f"{stage}: unexpanded base {image}"
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":")
        assert name and tag != "latest" and re.fullmatch(r"\d+\.\d+(\.\d+)?([-.\w]*)", tag), f"{stage}: unpinned {image}"


def test_gpu_builds_on_the_devel_image_matching_its_runtime(dockerfile: Dockerfile) -> None:
    devel, runtime = dockerfile.bases["build-gpu"], dockerfile.bases["gpu"]
    assert devel.startswith("nvidia/cuda:") and runtime.startswith("nvidia/cuda:")
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", runtime), runtime
    assert devel == runtime.replace("-runtime-", "-devel-"), (devel, runtime)
    # The cpu image is the service's Python, the gpu image's venv is built with the same version.
    python_version = dockerfile.bases["cpu"].split(":")[1].split("-")[0]
    assert dockerfile.args["PYTHON_VERSION"] == python_version
    assert dockerfile.bases["build-cpu"] == dockerfile.bases["cpu"]


def test_dependencies_come_from_the_lock_with_the_train_and_workflows_extras(dockerfile: Dockerfile) -> None:
    for build in RUNTIME_STAGES.values():
        syncs = uv_syncs(dockerfile, build)
        assert syncs, build
        for words in syncs:
            assert "--frozen" in words and "--no-dev" in words, words
            assert [words[k + 1] for k, w in enumerate(words) if w == "--extra"] == ["train", "workflows"], words
            assert "--all-extras" not in words and "--dev" not in words
        assert any("--no-editable" in words and "--no-install-project" not in words for words in syncs), build
    assert not any("--no-binary-package" in w for words in uv_syncs(dockerfile, "build-cpu") for w in words)
    # Beyond the lock, only hashed pins (rmm for the gpu target), never a bare `pip install NAME`.
    for i in dockerfile.instructions:
        if i.keyword == "RUN" and "pip install" in i.args:
            assert i.stage == "build-gpu" and "--require-hashes" in i.args and "-r " in i.args, i.args


def test_gpu_compiles_implicit_from_the_locked_sdist_with_cuda(dockerfile: Dockerfile) -> None:
    syncs = uv_syncs(dockerfile, "build-gpu")
    built = [words for words in syncs if "--no-binary-package" in words]
    assert built and all(words[words.index("--no-binary-package") + 1] == "implicit" for words in built)
    # Every sync that may (re)install implicit keeps it from source.
    assert all("--no-binary-package" in w or "--no-install-package" in w for w in syncs), syncs
    env = dockerfile.env("build-gpu")
    assert env["CUDACXX"] == "/usr/local/cuda/bin/nvcc"
    assert "-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc" in env["CMAKE_ARGS"]
    arch = next(i.args for i in dockerfile.stage("build-gpu") if i.keyword == "ARG" and "IMPLICIT_CUDA_ARCH" in i.args)
    assert re.fullmatch(r'IMPLICIT_CUDA_ARCH="?\d+"?', arch), "one architecture: implicit's CMake splits a list"
    # The build fails when implicit quietly built without its CUDA extension.
    check = [i.args for i in dockerfile.stage("build-gpu") if i.keyword == "RUN" and "implicit/gpu/_cuda" in i.args]
    assert check and "libcublas" in check[0] and "--no-binary-package implicit" in check[0]
    lock = (ROOT / "uv.lock").read_text()
    entry = lock[lock.index('name = "implicit"\nversion = "0.7.3"') :].split("\n[[package]]")[0]
    assert "sdist = {" in entry and "hash = \"sha256:" in entry


def test_gpu_requirements_are_hashed_pins_for_the_images_cuda(dockerfile: Dockerfile) -> None:
    text = GPU_REQUIREMENTS.read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", text, re.MULTILINE)
    assert pins and len(re.findall(r"--hash=sha256:", text)) >= len(pins)
    requirements = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(requirements) == len(pins), "every requirement is pinned with =="
    names = dict(pins)
    cuda_major = dockerfile.bases["gpu"].split(":")[1].split(".")[0]
    assert names.get(f"rmm-cu{cuda_major}") == "26.2.0"  # the RAPIDS release implicit 0.7.3 builds against
    assert not any(re.search(r"-cu(\d+)$", name) and not name.endswith(f"-cu{cuda_major}") for name in names)
    assert "numpy" not in names  # the lock's


def test_final_stages_hold_no_build_tools(dockerfile: Dockerfile) -> None:
    for final, build in RUNTIME_STAGES.items():
        stage = dockerfile.stage(final)
        copies = [i.args for i in stage if i.keyword == "COPY"]
        assert any(f"--from={build}" in c and "/app/.venv" in c for c in copies), final
        assert not any("--from=uv" in c or "/uv" in c.split() for c in copies), final
        for i in stage:
            if i.keyword == "RUN" and "apt-get install" in i.args:
                packages = i.args.split("apt-get install", 1)[1].split("&&")[0].split()
                installed = [p for p in packages if not p.startswith("-")]
                assert installed == ["libgomp1"], installed  # a runtime library, no toolchain
            elif i.keyword == "RUN":
                assert not BUILD_TOOLS.search(i.args.replace("apt-get", "")), i.args


def test_final_stages_run_as_the_workflows_uid_on_a_read_only_root(dockerfile: Dockerfile) -> None:
    context = workflow_security_context()
    uid = str(context["runAsUser"])
    assert uid == "10001" and context["runAsNonRoot"] is True
    mount = yaml.safe_load((ROOT / "platform.yaml").read_text())["workdir"]["mount_path"]
    for final in RUNTIME_STAGES:
        stage = dockerfile.stage(final)
        users = [i.args for i in stage if i.keyword == "USER"]
        assert users and users[-1].split(":")[0] == uid, final
        assert any(i.keyword == "RUN" and f"--uid {uid}" in i.args and "--home-dir /tmp" in i.args for i in stage)
        env = dockerfile.env(final)
        # Every place a library may write is under /tmp (an emptyDir in the workflow) or the workdir mount.
        assert env["HOME"] == "/tmp"
        for name in ("XDG_CACHE_HOME", "MPLCONFIGDIR", "NUMBA_CACHE_DIR"):
            assert env[name].startswith("/tmp/"), name
        assert env["PYTHONDONTWRITEBYTECODE"] == "1"
        assert env["RECO_WORKDIR"] == mount
        assert env["RECO_ENVIRONMENT"] == "gke" and env["RECO_TRAIN_DEVICE"] == final
        assert env["RECO_FEATURE_REPO"].startswith("/app/")
        entry = [i.args for i in stage if i.keyword == "ENTRYPOINT"]
        assert entry and entry[-1].replace(" ", "") == '["reco"]'
        for secretish in ("PASSWORD", "TOKEN", "SECRET", "TRACKING_URI", "REDIS_URL"):
            assert not any(secretish in name for name in env), secretish


def test_the_build_context_carries_what_the_image_copies(dockerfile: Dockerfile) -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for i in dockerfile.instructions:
        if i.keyword == "COPY" and "--from=" not in i.args:
            *sources, _ = shlex.split(i.args)
            for source in sources:
                top = source.split("/")[0]
                assert (ROOT / source).exists(), source
                assert top not in ignored, f"{source} is excluded from the build context by .dockerignore"
