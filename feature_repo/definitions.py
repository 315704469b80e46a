"""Feast definitions of reco-articles: the one copy, shared by every environment.

Where the feature tables live and how long a snapshot stays valid come from the environment,
so the same file serves a laptop and the cluster (``reco.featurestore`` sets these when it
loads this file by path; set them yourself to use the ``feast`` CLI):

    RECO_FEATURES_URI                 folder or gs:// prefix holding user_stats/ and article_stats/
                                      (default: <checkout>/.reco/features, never the current directory)
    RECO_USER_FEATURES_TTL_DAYS       default 30
    RECO_ARTICLE_FEATURES_TTL_DAYS    default 7

The tables are written daily by ``reco.features.build_features``: one ``date=YYYY-MM-DD``
partition per snapshot, ``event_ts`` = the end of that day (UTC).
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float64, Int64, String, UnixTimestamp

# Absolute by construction: Feast resolves relative FileSource paths against the process's cwd.
_FEATURES_URI = (
    os.environ.get("RECO_FEATURES_URI") or str(Path(__file__).resolve().parent.parent / ".reco" / "features")
).rstrip("/")
_USER_TTL = timedelta(days=int(os.environ.get("RECO_USER_FEATURES_TTL_DAYS", "30")))
# A day's article snapshot (event_ts = end of day) must still be found all through the serving day.
_ARTICLE_TTL = timedelta(days=max(1, int(os.environ.get("RECO_ARTICLE_FEATURES_TTL_DAYS", "7"))))

# A reader of the site, keyed by the user_id of the event log.
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="A reader")

# An article of the catalogue, keyed by the article_id of the event log.
article = Entity(name="article", join_keys=["article_id"], value_type=ValueType.STRING, description="An article")

# Daily user snapshots, all date partitions of features/user_stats.
user_stats_source = FileSource(
    name="user_stats_source",
    path=f"{_FEATURES_URI}/user_stats/date=*/*.parquet",
    timestamp_field="event_ts",
)

# Daily article snapshots, all date partitions of features/article_stats.
article_stats_source = FileSource(
    name="article_stats_source",
    path=f"{_FEATURES_URI}/article_stats/date=*/*.parquet",
    timestamp_field="event_ts",
)

# Reading behaviour of a user over the last 7/30 days (the ranker's user side, serving's read filter).
user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=_USER_TTL,
    schema=[
        Field(name="clicks_7d", dtype=Int64),
        Field(name="read_ratio_7d", dtype=Float64),
        Field(name="avg_session_len_s", dtype=Float64),
        Field(name="top_category", dtype=String),
        Field(name="recent_reads", dtype=Array(String)),
        Field(name="category_clicks", dtype=String),
        Field(name="clicks_30d", dtype=Int64),
    ],
    online=True,
    source=user_stats_source,
    tags={"owner": "reco", "grain": "daily"},
)

# Popularity, engagement and freshness of an article over the last 24h/7 days (the ranker's item side).
article_stats = FeatureView(
    name="article_stats",
    entities=[article],
    ttl=_ARTICLE_TTL,
    schema=[
        Field(name="views_24h", dtype=Int64),
        Field(name="clicks_24h", dtype=Int64),
        Field(name="ctr_24h", dtype=Float64),
        Field(name="avg_read_time_s", dtype=Float64),
        Field(name="reads_7d", dtype=Int64),
        Field(name="category", dtype=String),
        Field(name="published_at", dtype=UnixTimestamp),
        Field(name="age_hours", dtype=Float64),
    ],
    online=True,
    source=article_stats_source,
    tags={"owner": "reco", "grain": "daily"},
)

# Version 1 of what the recommender reads (training joins and serving); change features -> recommend_v2.
recommend_v1 = FeatureService(
    name="recommend_v1",
    features=[user_stats, article_stats],
    description="User and article features of the two-stage recommender, version 1",
    tags={"version": "1"},
)
