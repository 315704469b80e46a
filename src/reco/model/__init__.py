"""The served two-stage recommender: what offline evaluation scores is exactly what the service runs.

One request (``TwoStageModel.recommend``, in ``two_stage``):

1. **user vector** (``retrieval``): trained ALS factors for a known user; for a user unseen at
   training time but with recent reads, factors by *fold-in* (implicit's ``recalculate_user`` in
   closed form, in numpy, so serving does not need ``implicit``).
2. **candidates**, each source capped by ``RuleSettings``: ALS exact top-N over the eligible
   articles, or HNSW on large catalogues (``retrieval``); fresh-popular, newest, and newest in the
   user's favourite categories (``candidates``). The last two are why an article published this
   morning, which no collaborative model has seen, can still be recommended.
3. **filters** (``rules``): already read (training history and ``recent_reads``), the request's
   ``exclude``, unpublished and expired (the catalogue window of ``articles``).
4. **ranker** (``ranker``): a logistic model over user stats, article stats (the daily snapshot and today's counts,
   ``reco.intraday``), age at ``now``, user–category affinity and the ALS score; ``ranker_features`` is shared with training.
5. **rules** (``rules``): freshness decay with a half-life, at most ``max_per_category`` per
   category page, pinned items at fixed positions.

Cold start (no factors, no category history): fresh-popular, per ``category`` when given, with
reason ``cold_start``. ``baselines`` holds the ALS-only and popularity recommenders evaluation
compares with; ``pyfunc`` the MLflow wrapper and the registry loaders.

Stable interface for the service (see also ``load_model``)::

    articles = ArticleFeatures.from_frame(article_stats_df)   # once per catalogue refresh
    model = load_model(settings)                               # model.version = registry version
    items = model.recommend(user_id, k=10, now=now_utc, user_features=row_or_None,
                            articles=articles, exclude=(), category=None, pinned={0: "a1"})

All timestamps are UTC; ``now`` must be timezone-aware. Ages are in hours.
"""

from reco.model.articles import ArticleFeatures, epoch_seconds
from reco.model.candidates import SOURCES
from reco.model.pyfunc import (
    MODEL_ARTIFACT_NAME,
    PREDICT_COLUMNS,
    PYFUNC_ARTIFACT,
    TwoStagePyfunc,
    load_model,
    load_model_version,
    recommend_for_user,
)
from reco.model.ranker import RANKER_FEATURES, LinearRanker, category_affinity, ranker_features, recent_reads
from reco.model.rules import RecItem, RuleSettings
from reco.model.two_stage import TwoStageModel

# Private names still imported from here by tests and benchmarks, and ``_Aligned``, which pickles
# made before the package split refer to as ``reco.model._Aligned``.
from reco.model.articles import _Aligned as _Aligned, _now_seconds as _now_seconds  # isort: skip
from reco.model.candidates import _SRC_BIT as _SRC_BIT, _reason as _reason  # isort: skip
from reco.model.ranker import _user_scalar as _user_scalar  # isort: skip
from reco.model.retrieval import _top_indices as _top_indices  # isort: skip

__all__ = [
    "MODEL_ARTIFACT_NAME",
    "PREDICT_COLUMNS",
    "PYFUNC_ARTIFACT",
    "RANKER_FEATURES",
    "SOURCES",
    "ArticleFeatures",
    "LinearRanker",
    "RecItem",
    "RuleSettings",
    "TwoStageModel",
    "TwoStagePyfunc",
    "category_affinity",
    "epoch_seconds",
    "load_model",
    "load_model_version",
    "ranker_features",
    "recent_reads",
    "recommend_for_user",
]
