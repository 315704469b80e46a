"""The model in MLflow: the pyfunc wrapper logged by training (``TwoStagePyfunc``) and the
loaders from the registry (``load_model``, ``recommend_for_user``)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.pyfunc import PythonModel

from reco.errors import NoChampionError, RecoError
from reco.model.articles import ArticleFeatures
from reco.model.rules import RecItem
from reco.model.two_stage import TwoStageModel
from reco.settings import Settings

PYFUNC_ARTIFACT = "two_stage"
MODEL_ARTIFACT_NAME = "model"
PREDICT_COLUMNS: tuple[str, ...] = ("user_id", "rank", "article_id", "score", "reason")


class TwoStagePyfunc(PythonModel):
    """MLflow pyfunc around ``TwoStageModel``; the model itself lives in the ``two_stage`` artifact.

    ``predict`` takes one request per row — ``user_id`` (str), ``k`` (int), ``now`` (UTC
    timestamp), optional ``category`` (str) — and returns one row per recommendation with
    PREDICT_COLUMNS. Being self-contained, it serves from the article snapshot and the user
    histories the model was trained with; the live service calls ``recommend`` with fresh
    online features instead (``unwrap_python_model().model``).
    """

    def __init__(self) -> None:
        self.model: TwoStageModel | None = None

    def load_context(self, context: Any) -> None:
        self.model = TwoStageModel.load(Path(context.artifacts[PYFUNC_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if self.model is None:
            self.load_context(context)
        model = self.model
        assert model is not None
        if model.catalog is None:
            raise RecoError("this model carries no article catalogue; call recommend() with articles")
        frame = pd.DataFrame(model_input)
        rows: list[dict[str, Any]] = []
        for request in frame.to_dict("records"):
            now = pd.Timestamp(str(request.get("now")))
            now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
            user_id = str(request["user_id"])
            category = request.get("category")
            history = [str(model.item_ids[i]) for i in model.history(user_id)]
            items = model.recommend(
                user_id,
                k=int(request.get("k") or 10),
                now=now.to_pydatetime(),
                user_features={"recent_reads": history} if history else None,
                articles=model.catalog,
                category=str(category) if isinstance(category, str) and category else None,
            )
            rows += [
                {"user_id": user_id, "rank": r, "article_id": i.article_id, "score": i.score, "reason": i.reason}
                for r, i in enumerate(items, start=1)
            ]
        return pd.DataFrame(rows, columns=list(PREDICT_COLUMNS))


def load_model(settings: Settings, alias: str = "champion") -> TwoStageModel:
    """The registered model behind ``alias`` (``models:/<model_name>@<alias>``), with ``.version`` set.

    The alias is resolved to a version first and that version is loaded, so the version reported
    is the one actually loaded even if the alias moves meanwhile.
    """
    from mlflow.exceptions import MlflowException

    client = _registry_client(settings)
    try:
        version = client.get_model_version_by_alias(settings.model_name, alias)
    except MlflowException as error:
        raise NoChampionError(
            f"no model {settings.model_name}@{alias} in {settings.tracking_uri}: no version holds that alias yet "
            f"(run the pipeline until a model passes the gate, or `reco model promote VERSION`)"
        ) from error
    return load_model_version(settings, str(version.version))


def load_model_version(settings: Settings, version: str) -> TwoStageModel:
    """Exactly registry version ``version`` of the model (a production pod's pin, ``RECO_MODEL_VERSION``)."""
    from mlflow.exceptions import MlflowException

    client = _registry_client(settings)
    try:
        # The version's own artifact location, not a second registry lookup by name.
        uri = client.get_model_version_download_uri(settings.model_name, version)
    except MlflowException as error:
        raise RecoError(f"no version {version} of model {settings.model_name} in {settings.tracking_uri}") from error
    wrapper = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    model = wrapper.model if isinstance(wrapper, TwoStagePyfunc) else None
    if model is None:
        raise RecoError(f"{settings.model_name} version {version} is not a two-stage model")
    model.version = str(version)
    return model


def _registry_client(settings: Settings) -> Any:
    from mlflow import MlflowClient

    from reco.tracking_store import ready

    ready(settings)

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def recommend_for_user(
    settings: Settings,
    user_id: str,
    k: int = 10,
    *,
    now: dt.datetime | None = None,
    category: str | None = None,
    alias: str = "champion",
) -> tuple[list[RecItem], str]:
    """Recommendations for one user from the registry's ``alias`` model with online features, and
    the model version that made them (what ``reco recommend USER_ID -k K`` prints).

    The catalogue is the silver article table (metadata is known at publication) joined with the
    online article_stats; the user's row comes from the online user_stats (None if never seen).
    ``now`` defaults to the wall clock (UTC).
    """
    from reco.featurestore import online_features

    now = now or dt.datetime.now(dt.UTC)
    model = load_model(settings, alias)
    path = settings.silver_articles_path
    if not path.is_file():
        raise RecoError(f"no article table at {path}: run ingest first")
    meta = pd.read_parquet(path, columns=["article_id", "published_at", "category"])
    published = pd.to_datetime(meta["published_at"], utc=True)
    since = pd.Timestamp(now) - pd.Timedelta(hours=model.rules.max_age_hours)
    meta = meta[(published > since) & (published <= pd.Timestamp(now))]
    users, stats = online_features(settings, [user_id], meta["article_id"].tolist())
    frame = meta.merge(
        stats.drop(columns=["category", "published_at"], errors="ignore"),
        left_on="article_id",
        right_index=True,
        how="left",
    )
    row = users.loc[user_id].to_dict() if user_id in users.index else {}
    user_features = {
        str(key): v for key, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))
    }
    items = model.recommend(
        user_id,
        k=k,
        now=now,
        user_features=user_features or None,
        articles=ArticleFeatures.from_frame(frame),
        category=category,
    )
    return items, model.version
