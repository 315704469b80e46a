"""The evergreen catalogue of ``reco data generate --catalog evergreen``: items published over months
and clicked for weeks, no impressions, an item read at most once per user, stable heavy-tailed
appeal, ``--no-articles``, determinism by seed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from reco.cli import app
from reco.errors import RecoError
from reco.evergreen import HISTORY_DAYS, NEW_SHARE
from reco.generate import GenerateReport, generate
from reco.ingest import build_silver_articles
from reco.lake import list_dates, partition_files
from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA, UNKNOWN_CATEGORY
from reco.settings import Settings

SEED = 5
END = dt.date(2024, 6, 30)
SIZE = {"users": 1500, "articles": 800, "days": 8}


def _run(workdir: Path, **overrides: object) -> tuple[Settings, GenerateReport]:
    settings = Settings(workdir=workdir)
    args: dict = {**SIZE, "seed": SEED, "end": END, "catalog": "evergreen", **overrides}
    return settings, generate(settings, **args)


def _events(settings: Settings) -> pd.DataFrame:
    tables = [
        pq.read_table(f)
        for d in list_dates(settings.bronze_events_dir)
        for f in partition_files(settings.bronze_events_dir, d)
    ]
    return pa.concat_tables(tables).to_pandas()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, GenerateReport, pd.DataFrame, pd.DataFrame]:
    settings, report = _run(tmp_path_factory.mktemp("evergreen") / "work")
    articles = pq.read_table(settings.bronze_articles_dir / f"generated-{SEED}.parquet").to_pandas()
    return settings, report, _events(settings), articles


def test_items_are_published_over_the_months_before_the_window(world) -> None:
    _, report, _, articles = world
    start = pd.Timestamp(report.start, tz="UTC")
    age_days = (start - articles["published_at"]).dt.total_seconds() / 86_400
    assert len(articles) == SIZE["articles"]
    assert age_days.max() > 0.9 * HISTORY_DAYS and age_days.max() <= HISTORY_DAYS
    assert (age_days > 90).mean() > 0.4  # half the catalogue is older than three months
    assert (age_days < 0).mean() == pytest.approx(NEW_SHARE, abs=0.01)  # the site keeps publishing
    assert articles["category"].nunique() > 5
    assert pq.read_schema(next(iter(world[0].bronze_articles_dir.glob("generated-*.parquet")))) == ARTICLE_SCHEMA


def test_clicks_and_reads_without_impressions(world) -> None:
    settings, report, events, _ = world
    assert set(events["event_type"]) == {"click", "read"}
    assert report.impressions == 0 and report.clicks > 0 and report.reads > 0
    assert report.catalog == "evergreen"
    for column in ("request_id", "position", "propensity", "model_version", "variant"):
        assert events[column].isna().all(), column
    assert events.loc[events["event_type"] == "read", "dwell_ms"].gt(0).all()
    assert events.loc[events["event_type"] == "click", "dwell_ms"].isna().all()
    day = list_dates(settings.bronze_events_dir)[0]
    assert pq.read_schema(partition_files(settings.bronze_events_dir, day)[0]) == EVENT_SCHEMA


def test_an_item_is_read_at_most_once_per_user(world) -> None:
    _, _, events, _ = world
    distinct = events.drop_duplicates("event_id")
    assert len(distinct) < len(events)  # the log's at-least-once duplicates are there, same event_id
    for kind in ("click", "read"):
        assert not distinct[distinct["event_type"] == kind].duplicated(["user_id", "article_id"]).any(), kind
    clicks = distinct[distinct["event_type"] == "click"].set_index(["user_id", "article_id"])["ts"]
    reads = distinct[distinct["event_type"] == "read"].set_index(["user_id", "article_id"])["ts"]
    assert reads.index.isin(clicks.index).all()
    assert (reads > clicks.reindex(reads.index)).all()  # a read is logged after its click


def test_items_are_clicked_for_weeks_with_a_heavy_tail(world) -> None:
    _, _, events, articles = world
    clicks = events[events["event_type"] == "click"].drop_duplicates("event_id")
    published = articles.set_index("article_id")["published_at"]
    age = clicks["ts"].reset_index(drop=True) - published.reindex(clicks["article_id"]).reset_index(drop=True)
    age_days = age.dt.total_seconds() / 86_400
    assert age_days.min() >= 0  # nothing clicked before it is published
    assert age_days.median() > 14  # clicked for weeks, not hours
    per_item = clicks.groupby("article_id").size().sort_values(ascending=False)
    top = per_item.head(len(articles) // 10).sum() / per_item.sum()
    assert top > 0.25  # the 10 % most appealing items draw a quarter of the clicks or more


def test_user_tastes_are_concentrated(world) -> None:
    _, _, events, articles = world
    clicks = events[events["event_type"] == "click"].merge(articles[["article_id", "category"]], on="article_id")
    per_user = clicks.groupby("user_id")
    heavy = per_user.size() >= 10
    top_share = per_user["category"].agg(lambda c: c.value_counts(normalize=True).iloc[0])[heavy]
    # 13 categories: a user clicking evenly would have a top share near 1/13.
    assert top_share.median() > 0.35


def test_no_articles_writes_no_metadata_and_derives_the_articles(tmp_path: Path, world) -> None:
    _, _, with_metadata, _ = world
    settings, report = _run(tmp_path / "work", write_articles=False)
    files = sorted(p.name for p in settings.bronze_articles_dir.glob("*.parquet"))
    assert files == [f"derived-generated-{SEED}.parquet"]
    derived = pq.read_table(settings.bronze_articles_dir / files[0]).to_pandas()
    events = _events(settings)
    # The same traffic, only the metadata is missing.
    assert (
        events.sort_values("event_id")
        .reset_index(drop=True)
        .equals(with_metadata.sort_values("event_id").reset_index(drop=True))
    )
    assert set(derived["article_id"]) == set(events["article_id"])
    assert report.articles_derived == len(derived)
    assert set(derived["category"]) == {UNKNOWN_CATEGORY}
    assert (derived["title"] == derived["article_id"]).all()
    first = events.groupby("article_id")["ts"].min()
    assert (derived.set_index("article_id")["published_at"] == first.reindex(derived["article_id"]).to_numpy()).all()
    rows, rejected = build_silver_articles(settings)
    assert rows == len(derived) and not rejected
    # Generating again with metadata replaces the derived rows.
    _run(tmp_path / "work")
    assert sorted(p.name for p in settings.bronze_articles_dir.glob("*.parquet")) == [f"generated-{SEED}.parquet"]


def test_deterministic_by_seed(tmp_path: Path, world) -> None:
    _, _, first, articles = world
    settings, _ = _run(tmp_path / "again")
    again = _events(settings)
    assert (
        again.sort_values("event_id")
        .reset_index(drop=True)
        .equals(first.sort_values("event_id").reset_index(drop=True))
    )
    assert pq.read_table(settings.bronze_articles_dir / f"generated-{SEED}.parquet").to_pandas().equals(articles)
    other, _ = _run(tmp_path / "other", seed=SEED + 1)
    assert not _events(other)[["user_id", "article_id"]].head(200).equals(first[["user_id", "article_id"]].head(200))


def test_evergreen_has_no_drift_and_unknown_catalogues_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecoError, match="drift"):
        _run(tmp_path / "w", drift_day=3)
    with pytest.raises(RecoError, match="catalog"):
        _run(tmp_path / "w", catalog="shop")


def test_cli_generates_an_evergreen_click_log(tmp_path: Path) -> None:
    workdir = tmp_path / "cli"
    args = ["data", "generate", "--catalog", "evergreen", "--users", "300", "--articles", "100", "--days", "3"]
    result = CliRunner().invoke(app, [*args, "--end", "2024-06-30", "--no-articles", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert "evergreen" in result.output
    settings = Settings(workdir=workdir)
    assert not list(settings.bronze_articles_dir.glob("generated-*.parquet"))
    assert set(_events(settings)["event_type"]) == {"click", "read"}
    bad = CliRunner().invoke(app, ["data", "generate", "--catalog", "shop", "--workdir", str(workdir)])
    assert bad.exit_code != 0 and "--catalog" in bad.output


def test_news_stays_the_default(tmp_path: Path) -> None:
    settings = Settings(workdir=tmp_path / "news")
    report = generate(settings, users=200, articles=100, days=2, seed=SEED, end=END)
    assert report.catalog == "news" and report.impressions > 0
    events = _events(settings)
    assert events["request_id"].notna().all() and events["propensity"].notna().all()
