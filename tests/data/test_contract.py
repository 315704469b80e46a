"""The data contract on real generated days: a clean day passes, and each kind of breach, injected into a
generated and ingested day, fails with its own named check and nothing else (rows counted, examples shown)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from reco.contract import ContractError, check_contract, validate_day
from reco.errors import NoDataError
from reco.generate import generate
from reco.ingest import ingest_date
from reco.lake import list_dates, read_partition, replace_partition, write_atomic
from reco.settings import Settings

END = dt.date(2026, 4, 9)
DAYS = 6


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six days of generated news traffic, each day ingested as the daily runs would have."""
    workdir = tmp_path_factory.mktemp("contract") / "work"
    settings = Settings(workdir=workdir)
    generate(settings, users=400, articles=150, days=DAYS, seed=5, end=END)
    for day in list_dates(settings.bronze_events_dir):
        ingest_date(settings, day)
    return workdir


@pytest.fixture
def settings(lake: Path, tmp_path: Path) -> Settings:
    """A private copy of the lake to break."""
    workdir = tmp_path / "work"
    shutil.copytree(lake, workdir)
    return Settings(workdir=workdir)


def events_of(settings: Settings, day: dt.date = END) -> pa.Table:
    return read_partition(settings.silver_events_dir, day)


def put_events(settings: Settings, table: pa.Table, day: dt.date = END) -> None:
    replace_partition(table, settings.silver_events_dir, day)


def articles_of(settings: Settings) -> pa.Table:
    return pq.read_table(settings.silver_articles_path)


def put_articles(settings: Settings, table: pa.Table) -> None:
    write_atomic(table, settings.silver_articles_path)


def where(table: pa.Table, event_type: str, every: int = 1) -> pa.Array:
    """Mask of every ``every``-th row of one event type."""
    rows = pc.equal(table["event_type"], event_type).to_numpy(zero_copy_only=False)
    chosen = rows.nonzero()[0][::every]
    mask = [False] * table.num_rows
    for i in chosen:
        mask[i] = True
    return pa.array(mask)


def replace(table: pa.Table, column: str, mask: pa.Array, value: object) -> pa.Table:
    i = table.schema.get_field_index(column)
    kind = table.schema.field(i).type
    filled = pc.if_else(mask, pa.scalar(value, kind), table[column])
    return table.set_column(i, pa.field(column, kind), filled)  # nullable: a writer that lets nulls through


def first_rows(table: pa.Table, n: int) -> pa.Array:
    return pa.array([i < n for i in range(table.num_rows)])


# Each breach: what is done to a clean day, and the one check that must name it.
Breach = Callable[[Settings], None]


def drop_column(s: Settings) -> None:
    put_events(s, events_of(s).drop_columns(["variant"]))


def retype_position(s: Settings) -> None:
    t = events_of(s)
    i = t.schema.get_field_index("position")
    put_events(s, t.set_column(i, "position", pc.cast(t["position"], pa.int64())))


def null_user_ids(s: Settings) -> None:
    t = events_of(s)
    put_events(s, replace(t, "user_id", first_rows(t, 3), None))


def propensity_stops_being_logged(s: Settings) -> None:
    t = events_of(s)  # every 10th impression without its propensity: 10 %, above the 1 % allowed
    put_events(s, replace(t, "propensity", where(t, "impression", 10), None))


def reads_without_dwell(s: Settings) -> None:
    t = events_of(s)
    put_events(s, replace(t, "dwell_ms", where(t, "read", 4), None))


def duplicate_events(s: Settings) -> None:
    t = events_of(s)
    put_events(s, pa.concat_tables([t, t.slice(0, 4)]))


def unknown_event_type(s: Settings) -> None:
    t = events_of(s)
    put_events(s, replace(t, "event_type", first_rows(t, 2), "view"))


def dwell_of_ten_days(s: Settings) -> None:
    t = events_of(s)
    put_events(s, replace(t, "dwell_ms", where(t, "read", 50), 10 * 86_400_000))


def position_out_of_range(s: Settings) -> None:
    t = events_of(s)
    put_events(s, replace(t, "position", where(t, "impression", 500), 5000))


def propensity_zero(s: Settings) -> None:
    t = events_of(s)
    put_events(s, replace(t, "propensity", where(t, "impression", 700), 0.0))


def events_of_another_day(s: Settings) -> None:
    t = events_of(s)
    put_events(s, replace(t, "ts", first_rows(t, 5), dt.datetime.combine(END, dt.time(), tzinfo=dt.UTC) - dt.timedelta(hours=2)))


def clicks_on_unknown_articles(s: Settings) -> None:
    t = events_of(s)
    put_events(s, replace(t, "article_id", where(t, "click", 20), "ghost-article"))


def a_fifth_of_the_traffic(s: Settings) -> None:
    t = events_of(s)
    put_events(s, t.slice(0, t.num_rows // 5))


def four_times_the_traffic(s: Settings) -> None:
    t = events_of(s)
    copies = [
        t.set_column(0, "event_id", pc.binary_join_element_wise(t["event_id"], pa.scalar(f"-copy{k}"), ""))
        for k in range(4)
    ]
    put_events(s, pa.concat_tables(copies))


def article_without_title(s: Settings) -> None:
    a = articles_of(s)
    put_articles(s, replace(a, "title", first_rows(a, 2), None))


def article_twice(s: Settings) -> None:
    a = articles_of(s)
    put_articles(s, pa.concat_tables([a, a.slice(10, 1)]))


def article_table_without_category(s: Settings) -> None:
    put_articles(s, articles_of(s).drop_columns(["category"]))


BREACHES: dict[str, tuple[Breach, str]] = {
    "a column missing": (drop_column, "events.columns"),
    "position typed int64": (retype_position, "events.types"),
    "user ids missing": (null_user_ids, "events.nulls.user_id"),
    "propensity no longer logged on some impressions": (propensity_stops_being_logged, "events.nulls.propensity"),
    "reads without dwell": (reads_without_dwell, "events.nulls.dwell_ms"),
    "an event twice": (duplicate_events, "events.unique_event_id"),
    "an unknown event type": (unknown_event_type, "events.event_type"),
    "a dwell of ten days": (dwell_of_ten_days, "events.dwell_range"),
    "a position past the last slot": (position_out_of_range, "events.position_range"),
    "a propensity of zero": (propensity_zero, "events.propensity_range"),
    "events of the day before": (events_of_another_day, "events.in_day"),
    "clicks on an article nobody described": (clicks_on_unknown_articles, "events.article_exists"),
    "a fifth of the usual traffic": (a_fifth_of_the_traffic, "events.volume"),
    "four times the usual traffic": (four_times_the_traffic, "events.volume"),
    "an article without a title": (article_without_title, "articles.nulls.title"),
    "an article twice": (article_twice, "articles.unique_article_id"),
    "the article table without categories": (article_table_without_category, "articles.columns"),
}


def test_a_clean_generated_day_passes_every_check(settings: Settings) -> None:
    report = check_contract(settings, END)

    assert report.passed, report.headline()
    assert report.events == events_of(settings).num_rows > 0
    assert {c.status for c in report.checks} == {"passed"}
    names = [c.name for c in report.checks]
    assert len(names) == len(set(names))
    assert set(names) >= {check for _, check in BREACHES.values()}


@pytest.mark.parametrize("breach", list(BREACHES))
def test_each_breach_fails_its_own_named_check(settings: Settings, breach: str) -> None:
    inject, check = BREACHES[breach]
    inject(settings)

    report = check_contract(settings, END)

    assert [c.name for c in report.failures] == [check], report.headline()
    (failed,) = report.failures
    assert failed.rows > 0 and failed.detail
    if failed.column:  # a row-level check shows the rows it is about
        assert 0 < len(failed.examples) <= settings.contract_examples
        assert all(failed.column in example for example in failed.examples)


def test_the_counts_and_examples_name_the_broken_rows(settings: Settings) -> None:
    clicks_on_unknown_articles(settings)
    clicks = pc.sum(pc.equal(events_of(settings)["event_type"], "click")).as_py()
    ghosts = pc.sum(pc.equal(events_of(settings)["article_id"], "ghost-article")).as_py()

    (failed,) = check_contract(settings, END).failures

    assert failed.rows == ghosts
    assert {e["article_id"] for e in failed.examples} == {"ghost-article"}
    assert {e["event_type"] for e in failed.examples} == {"click"}
    assert f"{ghosts:,} of " in failed.detail and "click/read rows" in failed.detail
    assert clicks > ghosts


def test_a_breach_stops_with_a_report_on_disk_and_one_line(settings: Settings) -> None:
    propensity_zero(settings)

    with pytest.raises(ContractError) as caught:
        validate_day(settings, END)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"data contract of {END} failed 1 of ")
    assert "events.propensity_range (" in message
    report = settings.workdir / "reports" / END.isoformat() / "contract.md"
    assert f"report {report}" in message
    text = report.read_text()
    assert text.startswith(f"# Data contract of {END}: FAILED (1 of ")
    assert "## `events.propensity_range`" in text and "| event_id | event_type | propensity |" in text
    summary = caught.value.report.summary()
    assert summary["passed"] is False and summary["failed"] == ["events.propensity_range"]
    assert summary["checks"]["events.propensity_range"]["examples"][0]["propensity"] == 0.0


def test_not_enforced_a_breach_is_reported_and_the_day_goes_on(settings: Settings) -> None:
    a_fifth_of_the_traffic(settings)
    lenient = settings.model_copy(update={"contract_enforce": False})

    report = validate_day(lenient, END)

    assert not report.passed and report.summary()["enforced"] is False
    assert "Not enforced" in Path(report.report_path).read_text()


def test_volume_is_not_judged_without_three_earlier_days(settings: Settings) -> None:
    for back in (3, 4, 5):
        shutil.rmtree(settings.silver_events_dir / f"date={END - dt.timedelta(days=back)}")
    a_fifth_of_the_traffic(settings)  # would fail with a baseline

    report = check_contract(settings, END)

    assert report.passed
    volume = next(c for c in report.checks if c.name == "events.volume")
    assert volume.status == "skipped"
    assert volume.detail == f"2 earlier day(s) with events in the 7 before {END}, 3 needed"
    assert report.summary()["skipped"] == ["events.volume"]
    assert report.summary()["checks"]["events.volume"].startswith("skipped: 2 earlier day(s)")


def test_a_click_log_without_impressions_and_derived_articles_passes(tmp_path: Path) -> None:
    """What import-events makes of a bare click log (no impressions, no propensities, articles derived from the
    log with category unknown): the typed checks find nothing to judge, and that is not a breach."""
    settings = Settings(workdir=tmp_path / "work")
    generate(settings, users=300, articles=120, days=4, seed=3, end=END, catalog="evergreen", write_articles=False)
    for day in list_dates(settings.bronze_events_dir):
        ingest_date(settings, day)
    kinds = set(events_of(settings)["event_type"].to_pylist())
    assert "impression" not in kinds and articles_of(settings)["category"].to_pylist().count("unknown") > 0

    report = check_contract(settings, END)

    assert report.passed, report.headline()


def test_no_silver_for_the_day_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(NoDataError, match="run the ingest step first"):
        check_contract(settings, END + dt.timedelta(days=1))
