"""Data contract and behaviour of the synthetic traffic generator (``reco data generate``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from reco.cli import app
from reco.errors import RecoError
from reco.generate import (
    CATEGORIES,
    MAX_AGE_S,
    SLATE_SIZE,
    GenerateReport,
    generate,
    make_users,
    size_for_events,
)
from reco.lake import append_batch, list_dates, partition_files
from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA
from reco.settings import Settings

SEED = 3
END = dt.date(2024, 3, 10)
SIZE = {"users": 1500, "articles": 400, "days": 8}
DRIFT_DAY = 5


def _settings(tmp_path_factory: pytest.TempPathFactory, name: str) -> Settings:
    return Settings(workdir=tmp_path_factory.mktemp(name) / "work")


def _run(settings: Settings, **overrides: object) -> GenerateReport:
    args: dict = {**SIZE, "seed": SEED, "end": END, **overrides}
    return generate(settings, **args)


def _partitions(settings: Settings) -> dict[dt.date, pa.Table]:
    """Each bronze partition's rows, in file order (one generated file per partition)."""
    return {
        day: pa.concat_tables([pq.read_table(f) for f in partition_files(settings.bronze_events_dir, day)])
        for day in list_dates(settings.bronze_events_dir)
    }


def _events(settings: Settings) -> pd.DataFrame:
    frames = [t.to_pandas().assign(partition=day) for day, t in _partitions(settings).items()]
    return pd.concat(frames, ignore_index=True)


def _articles(settings: Settings) -> pd.DataFrame:
    return pq.read_table(settings.bronze_articles_dir / f"generated-{SEED}.parquet").to_pandas()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, GenerateReport]:
    settings = _settings(tmp_path_factory, "base")
    return settings, _run(settings)


@pytest.fixture(scope="module")
def events(base: tuple[Settings, GenerateReport]) -> pd.DataFrame:
    return _events(base[0])


@pytest.fixture(scope="module")
def impressions(base: tuple[Settings, GenerateReport], events: pd.DataFrame) -> pd.DataFrame:
    """Distinct impressions with ``clicked`` (0/1), the article's category and its age in hours."""
    unique = events.drop_duplicates("event_id")
    imp = unique[unique.event_type == "impression"]
    clicks = unique.loc[unique.event_type == "click", ["request_id", "article_id"]].assign(clicked=1)
    imp = imp.merge(clicks, on=["request_id", "article_id"], how="left").fillna({"clicked": 0})
    imp = imp.merge(_articles(base[0])[["article_id", "published_at", "category"]], on="article_id")
    return imp.assign(age_h=(imp.ts - imp.published_at).dt.total_seconds() / 3600)


def test_files_have_exactly_the_contract_schemas(base: tuple[Settings, GenerateReport]) -> None:
    settings, _ = base
    for day in list_dates(settings.bronze_events_dir):
        files = partition_files(settings.bronze_events_dir, day)
        assert len(files) == 1 and files[0].name.startswith("generated-")
        assert pq.read_schema(files[0]) == EVENT_SCHEMA
    assert pq.read_schema(settings.bronze_articles_dir / f"generated-{SEED}.parquet") == ARTICLE_SCHEMA


def test_report_counts_match_the_rows_written(base: tuple[Settings, GenerateReport], events: pd.DataFrame) -> None:
    _, report = base
    unique = events.drop_duplicates("event_id")
    assert report.events == len(events)
    assert report.duplicates == len(events) - len(unique)
    counts = unique.event_type.value_counts()
    assert (report.impressions, report.clicks, report.reads) == (counts["impression"], counts["click"], counts["read"])
    assert set(counts.index) == {"impression", "click", "read"}
    assert 0.02 < report.clicks / report.impressions < 0.15  # a news-site CTR


def test_ids_and_constant_fields(events: pd.DataFrame, base: tuple[Settings, GenerateReport]) -> None:
    assert events.event_id.str.fullmatch(rf"g{SEED}-\d+-\d+").all()
    assert events.user_id.str.fullmatch(r"u\d{6}").all()
    assert events.article_id.str.fullmatch(r"a\d{6}").all()
    assert events.request_id.str.fullmatch(rf"r{SEED}-\d+-\d+").all()
    assert (events.model_version == "logging-policy").all() and (events.variant == "stable").all()
    # Duplicates are whole-row copies: same event_id means same event.
    assert len(events.drop_duplicates("event_id")) == len(events.drop_duplicates(["event_id", "ts", "article_id"]))
    assert events.user_id.str[1:].astype(int).max() < base[1].users


def test_dwell_only_on_reads_and_in_seconds_to_minutes(events: pd.DataFrame) -> None:
    reads = events[events.event_type == "read"]
    assert events.loc[events.event_type != "read", "dwell_ms"].isna().all()
    assert reads.dwell_ms.notna().all() and (reads.dwell_ms >= 1_000).all() and (reads.dwell_ms <= 1_800_000).all()
    assert 10_000 < reads.dwell_ms.median() < 120_000


def test_clicks_and_reads_follow_their_impression(events: pd.DataFrame) -> None:
    unique = events.drop_duplicates("event_id")
    key = ["request_id", "article_id"]
    by_type = {t: unique[unique.event_type == t].set_index(key) for t in ("impression", "click", "read")}
    clicks = by_type["click"].join(by_type["impression"][["ts", "position", "propensity"]], rsuffix="_imp")
    assert clicks.ts_imp.notna().all() and (clicks.ts > clicks.ts_imp).all()
    assert (clicks.position == clicks.position_imp).all() and (clicks.propensity == clicks.propensity_imp).all()
    reads = by_type["read"].join(by_type["click"][["ts"]], rsuffix="_click")
    assert reads.ts_click.notna().all() and (reads.ts > reads.ts_click).all()
    # Slates: positions 0..n-1 once each per request, at most SLATE_SIZE.
    imp = by_type["impression"].reset_index()
    per_request = imp.groupby("request_id").position.agg(["min", "max", "count", "nunique"])
    assert (per_request["min"] == 0).all() and (per_request["max"] == per_request["count"] - 1).all()
    assert (per_request["count"] == per_request["nunique"]).all() and per_request["count"].max() == SLATE_SIZE
    assert not imp.duplicated(["request_id", "article_id"]).any()


def test_events_only_reference_articles_published_before_them(
    events: pd.DataFrame, base: tuple[Settings, GenerateReport]
) -> None:
    articles = _articles(base[0])
    joined = events.merge(articles[["article_id", "published_at"]], on="article_id", how="left")
    assert joined.published_at.notna().all()
    assert (joined.published_at <= joined.ts).all()
    first_day = pd.Timestamp(base[1].start, tz="UTC")
    # A catalogue exists before day 1, and publishing continues through the period.
    assert (articles.published_at < first_day).sum() >= SLATE_SIZE
    assert articles.published_at.dt.date.nunique() >= SIZE["days"]
    assert articles.abstract.isna().any() and articles.abstract.notna().mean() > 0.5
    shares = articles.category.value_counts(normalize=True)
    assert 10 <= len(shares) <= len(CATEGORIES) and shares.iloc[0] > 3 * shares.iloc[-1]


def test_impressions_are_within_the_freshness_window(impressions: pd.DataFrame) -> None:
    # Older ones only appear when fewer than a slate of fresh articles exists, which this catalogue never has.
    assert impressions.age_h.max() <= MAX_AGE_S / 3600 + 1e-6


def test_position_bias_is_visible(impressions: pd.DataFrame) -> None:
    ctr = impressions.groupby("position").clicked.mean()
    assert ctr[0] > 1.5 * ctr[5] and ctr[5] > ctr[9] * 0.8


def test_fresher_articles_get_more_clicks(impressions: pd.DataFrame) -> None:
    fresh = impressions[impressions.age_h < 12].clicked.mean()
    old = impressions[impressions.age_h > 36].clicked.mean()
    assert fresh > 2 * old


def test_users_click_their_favourite_categories_more(impressions: pd.DataFrame) -> None:
    favourite = np.asarray(CATEGORIES)[make_users(SEED, SIZE["users"]).preference.argmax(axis=1)]
    is_fav = favourite[impressions.user_id.str[1:].astype(int)] == impressions.category
    assert impressions[is_fav].clicked.mean() > 3 * impressions[~is_fav].clicked.mean()


def test_preferences_are_concentrated_and_activity_heavy_tailed(events: pd.DataFrame) -> None:
    preference = make_users(SEED, 5000).preference
    top3 = np.sort(preference, axis=1)[:, -3:].sum(axis=1)
    assert np.median(top3) > 0.8
    per_user = events.groupby("user_id").size().sort_values(ascending=False)
    assert per_user.iloc[: len(per_user) // 10].sum() > 0.3 * per_user.sum()


def test_propensities_are_the_plackett_luce_slot_probabilities(
    impressions: pd.DataFrame, base: tuple[Settings, GenerateReport]
) -> None:
    assert ((impressions.propensity > 0) & (impressions.propensity <= 1)).all()
    # IPS identity for the slot-k choice among n eligible articles: E[1 / propensity] = n - k.
    # This holds only if propensity is the probability the policy gave the article it actually drew.
    published = np.sort(_articles(base[0]).published_at.astype("int64").to_numpy()) / 1e6
    t = impressions.ts.astype("int64").to_numpy() / 1e6
    n_out = np.searchsorted(published, t, side="right")
    n_fresh = n_out - np.searchsorted(published, t - MAX_AGE_S, side="left")
    n_eligible = np.maximum(n_fresh, np.minimum(n_out, SLATE_SIZE))
    ratio = (1 / impressions.propensity) / (n_eligible - impressions.position)
    by_position = ratio.groupby(impressions.position).mean()
    assert by_position.between(0.85, 1.15).all(), by_position.to_dict()


def test_duplicates_and_late_arrivals_in_small_shares(
    events: pd.DataFrame, base: tuple[Settings, GenerateReport]
) -> None:
    settings, report = base
    dup_share = events.event_id.duplicated().mean()
    assert 0.001 < dup_share < 0.004
    unique = events.drop_duplicates("event_id")
    late = unique.ts.dt.date < unique.partition
    assert report.late == int(late.sum())
    assert 0.003 < late.mean() < 0.008
    # Late by exactly one day, never into the future, none written after the last day.
    assert (events.partition - events.ts.dt.date <= dt.timedelta(days=1)).all()
    assert (events.ts.dt.date <= events.partition).all()
    assert max(list_dates(settings.bronze_events_dir)) == END


def test_end_sets_the_last_day(base: tuple[Settings, GenerateReport]) -> None:
    settings, report = base
    dates = list_dates(settings.bronze_events_dir)
    assert dates[-1] == END and dates[0] == END - dt.timedelta(days=SIZE["days"] - 1)
    assert len(dates) == SIZE["days"]
    assert (report.start, report.end, report.days) == (dates[0].isoformat(), END.isoformat(), SIZE["days"])


def test_default_end_is_today_utc(tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC).date()
    report = generate(Settings(workdir=tmp_path), users=20, articles=40, days=2, seed=1)
    after = dt.datetime.now(dt.UTC).date()
    assert report.end in (before.isoformat(), after.isoformat())


def test_same_seed_same_rows(base: tuple[Settings, GenerateReport], tmp_path_factory: pytest.TempPathFactory) -> None:
    again = _settings(tmp_path_factory, "again")
    _run(again)
    first, second = _partitions(base[0]), _partitions(again)
    assert first.keys() == second.keys()
    assert all(first[day].equals(second[day]) for day in first)
    articles = f"generated-{SEED}.parquet"
    assert pq.read_table(base[0].bronze_articles_dir / articles).equals(
        pq.read_table(again.bronze_articles_dir / articles)
    )


def test_different_seeds_differ(tmp_path: Path) -> None:
    size = {"users": 100, "articles": 60, "days": 2, "end": END}
    one, two = Settings(workdir=tmp_path / "one"), Settings(workdir=tmp_path / "two")
    generate(one, seed=1, **size)
    generate(two, seed=2, **size)
    a, b = _partitions(one)[END], _partitions(two)[END]
    assert not a.drop_columns(["event_id", "request_id"]).equals(b.drop_columns(["event_id", "request_id"]))


def test_rerun_replaces_generated_files_only(tmp_path: Path) -> None:
    settings = Settings(workdir=tmp_path)
    size = {"users": 100, "articles": 60, "days": 3, "seed": 5, "end": END}
    first = generate(settings, **size)
    foreign = append_batch(EVENT_SCHEMA.empty_table(), settings.bronze_events_dir, END, prefix="service")
    (settings.bronze_articles_dir / "generated-99.parquet").write_bytes(b"from another seed")
    second = generate(settings, **size)
    assert second.events == first.events
    assert sum(len(t) for t in _partitions(settings).values()) == first.events
    assert foreign.exists()
    assert [p.name for p in settings.bronze_articles_dir.glob("*.parquet")] == ["generated-5.parquet"]


def test_drift_changes_the_click_mix_from_the_drift_day_only(
    base: tuple[Settings, GenerateReport], tmp_path_factory: pytest.TempPathFactory
) -> None:
    drifted = _settings(tmp_path_factory, "drift")
    _run(drifted, drift_day=DRIFT_DAY)
    steady_parts, drift_parts = _partitions(base[0]), _partitions(drifted)
    start = END - dt.timedelta(days=SIZE["days"] - 1)
    drift_date = start + dt.timedelta(days=DRIFT_DAY - 1)
    for day in steady_parts:
        if day < drift_date:
            assert steady_parts[day].equals(drift_parts[day]), f"{day} changed before the drift day"

    steady_articles, drift_articles = _articles(base[0]), _articles(drifted)
    before = steady_articles.published_at.dt.date < drift_date
    assert steady_articles[before].equals(drift_articles[before])
    trending = [CATEGORIES[i] for i in make_users(SEED, SIZE["users"]).trending]
    supply = [a[~before].category.isin(trending).mean() for a in (steady_articles, drift_articles)]
    assert supply[1] > supply[0] + 0.15

    def click_mix(settings: Settings, after: bool) -> pd.Series:
        category = _articles(settings).set_index("article_id").category
        ev = _events(settings).drop_duplicates("event_id")
        clicks = ev[(ev.event_type == "click") & ((ev.ts.dt.date >= drift_date) == after)]
        return category.reindex(clicks.article_id).value_counts(normalize=True).reindex(list(CATEGORIES), fill_value=0)

    def distance(a: pd.Series, b: pd.Series) -> float:
        return float((a - b).abs().sum() / 2)

    assert distance(click_mix(base[0], False), click_mix(drifted, False)) == 0
    assert distance(click_mix(base[0], True), click_mix(drifted, True)) > 0.2
    assert click_mix(drifted, True)[trending].sum() > 1.5 * click_mix(base[0], True)[trending].sum()


def test_rejects_impossible_requests(tmp_path: Path) -> None:
    settings = Settings(workdir=tmp_path)
    with pytest.raises(RecoError, match="drift-day"):
        generate(settings, users=10, articles=40, days=3, seed=1, drift_day=4)
    with pytest.raises(RecoError, match="articles"):
        generate(settings, users=10, articles=5, days=3, seed=1)
    with pytest.raises(RecoError, match="one day"):
        generate(settings, users=10, articles=40, days=0, seed=1)
    assert not settings.bronze_events_dir.exists()


def test_size_for_events_hits_the_target(tmp_path: Path) -> None:
    target = 60_000
    report = generate(Settings(workdir=tmp_path), seed=2, end=END, **size_for_events(target))
    assert 0.75 * target < report.events < 1.33 * target


def test_cli_generates_into_the_workdir(tmp_path: Path) -> None:
    args = ["data", "generate", "--users", "50", "--articles", "40", "--days", "2", "--seed", "4"]
    args += ["--end", "2024-01-31", "--drift-day", "2", "--workdir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert list_dates(tmp_path / "lake" / "bronze" / "events") == [dt.date(2024, 1, 30), dt.date(2024, 1, 31)]
    bad = CliRunner().invoke(app, [*args[:-4], "--drift-day", "9", "--workdir", str(tmp_path)])
    assert bad.exit_code == 1 and "drift-day" in bad.output
