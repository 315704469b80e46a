"""The ranker's training: labelled rows of day L, their feature matrix, the logistic fit.

Rows are L's impressions (label: the user clicked the article that day); a click log without
impressions gets sampled negatives (articles eligible at the click's time). Their features, joined
point-in-time through Feast, become the matrix by the same ``reco.model.ranker_features`` serving uses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from reco.intraday import REFRESH_S, counts_before
from reco.model import RANKER_FEATURES, LinearRanker, TwoStageModel, category_affinity, epoch_seconds, ranker_features
from reco.train.config import TrainConfig


def ranker_rows(
    events: pd.DataFrame, articles: pd.DataFrame, day: dt.date, config: TrainConfig
) -> tuple[pd.DataFrame, str]:
    """Labelled rows (user_id, article_id, event_timestamp, label) of one day and how they were made.

    ``config.ranker_rows``:

    * ``"sampled"``, and always for a log without impressions: the day's clicks (label 1) plus
      ``negatives_per_click`` articles eligible at the click's time (published, younger than max age, not
      clicked by the user), label 0: the ranker learns to rank what serving ranks, every eligible candidate.
    * ``"impressions"``: the day's impressions, label 1 when the user clicked the article that day: the
      hard negatives, what the site showed and was passed over.
    * ``"mixed"`` (default): both, each part capped at ``max_ranker_rows``, a row present in both kept once.
      On the news world (session NDCG@10, three test days, with today's counts as features) mixed gave 0.292,
      impressions 0.290, sampled 0.284; without today's counts impressions alone had been the worst (0.93x
      the newest-in-top-category rule against 1.0x for sampled).
    """
    if config.ranker_rows == "mixed":
        shown, how_shown = ranker_rows(events, articles, day, dataclasses.replace(config, ranker_rows="impressions"))
        if how_shown != "impressions":  # a log without impressions: sampled rows were made instead
            return shown, how_shown
        sampled, how_sampled = ranker_rows(events, articles, day, dataclasses.replace(config, ranker_rows="sampled"))
        both = pd.concat([shown, sampled], ignore_index=True)
        both = both.drop_duplicates(["user_id", "article_id", "event_timestamp"]).reset_index(drop=True)
        return both, f"{how_shown} + {how_sampled}"
    rng = np.random.default_rng(config.seed)
    start = pd.Timestamp(day, tz="UTC")
    today = events[(events["ts"] >= start) & (events["ts"] < start + pd.Timedelta(days=1))]
    clicks = today[today["event_type"] == "click"]
    clicked = set(zip(clicks["user_id"], clicks["article_id"], strict=True))
    shown = today[today["event_type"] == "impression"]
    if len(shown) and config.ranker_rows == "impressions":
        rows = shown.drop_duplicates(
            ["request_id", "article_id"] if shown["request_id"].notna().all() else ["user_id", "article_id", "ts"]
        )
        label = [int((u, a) in clicked) for u, a in zip(rows["user_id"], rows["article_id"], strict=True)]
        frame = pd.DataFrame(
            {
                "user_id": rows["user_id"].to_numpy(),
                "article_id": rows["article_id"].to_numpy(),
                "event_timestamp": rows["ts"].to_numpy(),
                "label": label,
            }
        )
        how = "impressions"
    else:
        if clicks.empty:
            return pd.DataFrame(columns=["user_id", "article_id", "event_timestamp", "label"]), "no clicks"
        # Cap the clicks first so that clicks + their negatives fit max_ranker_rows.
        keep = config.max_ranker_rows // (1 + config.negatives_per_click)
        if len(clicks) > keep:
            clicks = clicks.iloc[np.sort(rng.choice(len(clicks), keep, replace=False))]
        pub = articles.sort_values("published_at")
        pub_s = epoch_seconds(pub["published_at"])
        ids = pub["article_id"].to_numpy()
        t = epoch_seconds(clicks["ts"])
        lo = np.searchsorted(pub_s, t - config.rules.max_age_hours * 3600.0, side="left")
        hi = np.searchsorted(pub_s, t, side="right")
        # (n_clicks, negatives_per_click) uniform draws among the articles eligible at each click.
        draws = lo[:, None] + np.floor(
            rng.random((len(clicks), config.negatives_per_click)) * (hi - lo)[:, None]
        ).astype(np.int64)
        draws = np.minimum(draws, len(ids) - 1)
        users = np.repeat(clicks["user_id"].to_numpy(), config.negatives_per_click)
        times = np.repeat(clicks["ts"].to_numpy(), config.negatives_per_click)
        negatives = ids[draws.ravel()]
        usable = np.repeat(hi - lo > 1, config.negatives_per_click) & np.array(
            [(u, a) not in clicked for u, a in zip(users, negatives, strict=True)], dtype=bool
        )
        frame = pd.concat(
            [
                pd.DataFrame(
                    {
                        "user_id": clicks["user_id"].to_numpy(),
                        "article_id": clicks["article_id"].to_numpy(),
                        "event_timestamp": clicks["ts"].to_numpy(),
                        "label": 1,
                    }
                ),
                pd.DataFrame(
                    {
                        "user_id": users[usable],
                        "article_id": negatives[usable],
                        "event_timestamp": times[usable],
                        "label": 0,
                    }
                ),
            ],
            ignore_index=True,
        )
        how = "clicks + sampled negatives"
    if len(frame) > config.max_ranker_rows:
        frame = frame.iloc[np.sort(rng.choice(len(frame), config.max_ranker_rows, replace=False))]
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame.reset_index(drop=True), how


def ranker_matrix(
    joined: pd.DataFrame, articles: pd.DataFrame, sub_model: TwoStageModel, events: pd.DataFrame | None = None
) -> np.ndarray:
    """The (n, len(RANKER_FEATURES)) matrix of point-in-time joined rows, through the serving
    feature builder. ``joined`` holds historical_features' output; metadata (category,
    published_at) comes from the article table, as at serving time, because an article published
    on the row's day has no stats snapshot yet. The intraday counts come from ``events`` (the rows'
    day, impressions included) as they stood ``REFRESH_S`` before each row; none without ``events``."""
    n = len(joined)
    meta = articles.drop_duplicates("article_id", keep="last").set_index("article_id")
    category = meta["category"].reindex(joined["article_id"]).astype(object).to_numpy()
    published = meta["published_at"].reindex(joined["article_id"])
    age_h = (epoch_seconds(joined["event_timestamp"]) - epoch_seconds(published)) / 3600.0

    # One user vector and affinity per (user, snapshot day), as serving computes per request:
    # known phase-1 factors, else fold-in of the snapshot's recent reads.
    day = (epoch_seconds(joined["event_timestamp"]) // 86_400).astype(np.int64)
    user_codes, _ = pd.factorize(joined["user_id"].astype(str))
    key_codes, key_values = pd.factorize(user_codes.astype(np.int64) * 100_000 + (day - day.min()))
    first_row = np.full(len(key_values), -1, dtype=np.int64)
    first_row[key_codes[::-1]] = np.arange(n)[::-1]
    cat_codes, cat_values = pd.factorize(pd.Series(category).fillna(""))
    x = np.zeros((len(key_values), sub_model.n_factors), dtype=np.float32)
    has_u = np.zeros(len(key_values), dtype=np.float64)
    aff_u = np.zeros((len(key_values), len(cat_values)), dtype=np.float64)
    top_u = np.full(len(key_values), "", dtype=object)
    cat_pos = {c: i for i, c in enumerate(cat_values)}
    user_columns = [c for c in ("user_id", "recent_reads", "category_clicks", "top_category") if c in joined.columns]
    records = joined[user_columns].iloc[first_row].to_dict("records")
    for k, rec in enumerate(records):
        features = {str(name): v for name, v in rec.items() if not _is_missing(v)}
        vector = sub_model.user_vector(str(rec["user_id"]), features)[0]
        if vector is not None:
            x[k], has_u[k] = vector, 1.0
        for cat, share in category_affinity(features).items():
            if cat in cat_pos:
                aff_u[k, cat_pos[cat]] = share
        top = features.get("top_category")
        top_u[k] = top if isinstance(top, str) else ""

    items = np.array([sub_model.item_index.get(str(a), -1) for a in joined["article_id"]], dtype=np.int64)
    known = items >= 0
    als = np.zeros(n, dtype=np.float64)
    als[known] = np.einsum("ij,ij->i", sub_model.item_factors[items[known]], x[key_codes[known]])
    affinity = aff_u[key_codes, cat_codes]
    is_top = (top_u[key_codes] == np.asarray(cat_values, dtype=object)[cat_codes]) & (top_u[key_codes] != "")

    def num(name: str) -> np.ndarray:
        if name not in joined.columns:
            return np.zeros(n)
        return pd.to_numeric(joined[name], errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)

    at = epoch_seconds(joined["event_timestamp"]) - REFRESH_S
    if events is not None:
        views_today, clicks_today = counts_before(events, joined["article_id"].to_numpy(), at)
    else:
        views_today, clicks_today = np.zeros(n), np.zeros(n)
    return ranker_features(
        views_today=views_today,
        clicks_today=clicks_today,
        als_score=als,
        has_factors=has_u[key_codes],
        item_known=known.astype(np.float64),
        views_24h=num("views_24h"),
        clicks_24h=num("clicks_24h"),
        avg_read_time_s=num("avg_read_time_s"),
        age_hours=np.nan_to_num(age_h, nan=0.0),
        affinity=affinity,
        is_top_category=is_top.astype(np.float64),
        clicks_7d=num("clicks_7d"),
        read_ratio_7d=num("read_ratio_7d"),
        avg_session_len_s=num("avg_session_len_s"),
    )


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return bool(np.isnan(value))
    return False


def fit_ranker(x: np.ndarray, y: np.ndarray, config: TrainConfig) -> tuple[LinearRanker | None, str, float]:
    """Logistic regression on standardised features; 20% held out for the AUC that is reported."""
    if len(y) < 50 or y.min() == y.max():
        return None, f"skipped: {len(y)} rows with {int(y.sum())} clicks (need both classes, 50+ rows)", float("nan")
    rng = np.random.default_rng(config.seed)
    test = rng.random(len(y)) < 0.2
    if y[~test].min() == y[~test].max() or y[test].min() == y[test].max():
        test = np.zeros(len(y), dtype=bool)
    mean = x[~test].mean(axis=0)
    scale = x[~test].std(axis=0)
    scale[scale < 1e-9] = 1.0
    clf = LogisticRegression(C=config.ranker_c, max_iter=500)
    clf.fit((x[~test] - mean) / scale, y[~test])
    ranker = LinearRanker(RANKER_FEATURES, mean, scale, clf.coef_[0].astype(np.float64), float(clf.intercept_[0]))
    auc = float(roc_auc_score(y[test], ranker.predict(x[test]))) if test.any() else float("nan")
    return ranker, "trained", auc
