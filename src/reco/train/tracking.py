"""MLflow: the experiment, provenance (git commit, package versions, one ``log_input`` dataset per
silver file), the model as one pyfunc (``name="model"``) with signature and input example, and
loading it back as served."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import subprocess
import tempfile
import warnings
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema

from reco.errors import NoDataError
from reco.model import MODEL_ARTIFACT_NAME, PYFUNC_ARTIFACT, TwoStageModel, TwoStagePyfunc
from reco.settings import Settings, repo_root
from reco.train.config import EXPERIMENT

_PACKAGES = ("reco-articles", "numpy", "scipy", "pandas", "pyarrow", "implicit", "scikit-learn", "mlflow", "feast")


def ensure_experiment(settings: Settings) -> str:
    """Point MLflow at ``settings.tracking_uri`` and return the experiment id of EXPERIMENT.

    With the local SQLite store, artifacts go under ``mlflow_dir/artifacts`` (MLflow's default
    would be ./mlruns relative to whatever the current directory is)."""
    from reco.tracking_store import ready

    uri = ready(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    found = mlflow.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return str(found.experiment_id)
    location = (settings.mlflow_dir / "artifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
    return str(mlflow.create_experiment(EXPERIMENT, artifact_location=location))


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


PREDICT_SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec(DataType.string, "user_id"),
            ColSpec(DataType.long, "k"),
            ColSpec(DataType.datetime, "now"),
            ColSpec(DataType.string, "category", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec(DataType.string, "user_id"),
            ColSpec(DataType.long, "rank"),
            ColSpec(DataType.string, "article_id"),
            ColSpec(DataType.double, "score"),
            ColSpec(DataType.string, "reason"),
        ]
    ),
)


def _pip_requirements() -> list[str]:
    versions = package_versions()
    return [
        f"{name}=={versions[name]}"
        for name in ("numpy", "pandas", "scipy", "mlflow")
        if versions[name] != "not installed"
    ]


def log_two_stage(model: TwoStageModel, example_user: str, now: dt.datetime) -> str:
    """Log ``model`` as one pyfunc (``name="model"``) in the active run; returns its model URI."""
    with tempfile.TemporaryDirectory(prefix="reco-model-") as tmp:
        path = model.save(Path(tmp) / PYFUNC_ARTIFACT)
        example = pd.DataFrame(
            {"user_id": [example_user], "k": [10], "now": [pd.Timestamp(now).tz_convert(None)], "category": [""]}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT_NAME,
                python_model=TwoStagePyfunc(),
                artifacts={PYFUNC_ARTIFACT: str(path)},
                signature=PREDICT_SIGNATURE,
                input_example=example,
                pip_requirements=_pip_requirements(),
            )
    return str(info.model_uri)


def _log_inputs(digests: dict[str, str], root: Path) -> None:
    from mlflow.data.dataset import Dataset
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    datasets: list[Dataset | None] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, digest in sorted(digests.items()):
            source = resolve_dataset_source(str((root / name) if not Path(name).is_absolute() else name))
            datasets.append(MetaDataset(source, name=name, digest=digest[:16]))  # type: ignore[abstract]
    mlflow.log_inputs(datasets=datasets, contexts=["training"] * len(datasets), tags_list=[{}] * len(datasets))


def load_run_model(settings: Settings, run_id: str) -> TwoStageModel:
    """The two-stage model logged by training run ``run_id`` (through pyfunc, as served)."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    run = mlflow.get_run(run_id)
    uri = run.data.tags.get("model_uri") or f"runs:/{run_id}/{MODEL_ARTIFACT_NAME}"
    wrapper = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    if not isinstance(wrapper, TwoStagePyfunc) or wrapper.model is None:
        raise NoDataError(f"run {run_id} logged no two-stage model")
    return wrapper.model
