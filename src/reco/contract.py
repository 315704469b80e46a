"""The data contract: what D's silver events and the article table must hold before anything learns from them.

The ``validate`` step runs between ``ingest`` and ``features``. Ingest already sets malformed *rows* aside
(``reco.validate``); the contract judges the *day*: a logger that stopped sending a column, a partition that
holds another day's events, clicks on articles nobody described, a day with a fraction of the usual traffic.
Every rule is a named pandera check (pandas backend); a day that breaks any of them stops the run before
training, with a report of which check, how many rows and a few examples (``reports/<D>/contract.md`` and the
run summary's ``validate``). The champion is never touched by a run that stopped here.

=====================================  ==============================================================================
check                                  rule (thresholds: ``Settings.contract_*``, env ``RECO_CONTRACT_*``)
=====================================  ==============================================================================
``events.columns``                     exactly the columns of ``EVENT_SCHEMA``, none missing, none extra
``events.types``                       each column of its ``EVENT_SCHEMA`` type
``events.nulls.<column>``              required columns (id, ts, user, article, type): no nulls at all
``events.nulls.<column>``              position, request_id, propensity among impressions, dwell_ms among reads: once
                                       the day's log carries the column for a type at all, at most
                                       ``contract_max_null_rate`` of that type's rows lack it (a click log without
                                       impressions, or without propensities, passes)
``events.unique_event_id``             no event id twice
``events.event_type``                  one of ``EVENT_TYPES``
``events.dwell_range``                 0 <= dwell_ms <= ``contract_max_dwell_ms``
``events.position_range``              0 <= position <= ``contract_max_position`` (0-based)
``events.propensity_range``            0 < propensity <= 1
``events.in_day``                      every ts inside [D 00:00, D+1 00:00) UTC
``events.article_exists``              clicked and read articles are rows of the article table (derived articles
                                       count: a log without metadata describes its own); at most
                                       ``contract_max_orphan_rate`` may not
``events.volume``                      rows of D between ``contract_volume_min_ratio`` and ``..._max_ratio`` of the
                                       median of the earlier days with events among the ``contract_volume_days``
                                       before D; skipped (and said) with fewer than ``contract_volume_min_days``
``articles.columns`` / ``.types``      exactly the columns and types of ``ARTICLE_SCHEMA``
``articles.nulls.<column>``            article_id, published_at, category, title: no nulls
``articles.unique_article_id``         one row per article
=====================================  ==============================================================================

Only D is judged: days that a run's catch-up ingests are history the run reads, not the day it answers for.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandera.errors import SchemaErrors
from pandera.pandas import Check, Column, DataFrameSchema

from reco.errors import DataContractError, NoDataError
from reco.lake import partition_dir, partition_files, read_partition
from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA, EVENT_TYPES
from reco.settings import Settings

# Columns every event row must have; the others are optional by event type (schemas.py).
REQUIRED_EVENT_COLUMNS = ("event_id", "ts", "user_id", "article_id", "event_type")
REQUIRED_ARTICLE_COLUMNS = ("article_id", "published_at", "category", "title")
# Optional columns a log carries for one event type: checked by null rate once the day's log carries them.
TYPED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("position", "impression"),
    ("request_id", "impression"),
    ("propensity", "impression"),
    ("dwell_ms", "read"),
)
# Events whose article must be described by the article table.
ENGAGED_TYPES = ("click", "read")

# How Parquet types become pandas dtypes here, so that a type drift in the lake shows as a dtype drift.
_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}


@dataclass
class CheckResult:
    """One named check: ``status`` passed | failed | skipped; ``rows`` = rows (or columns) that break it."""

    name: str
    table: str
    column: str | None
    rule: str
    status: str = "passed"
    rows: int = 0
    detail: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def summary(self) -> dict[str, Any] | str:
        if self.status == "passed":
            return "passed"
        if self.status == "skipped":
            return f"skipped: {self.detail}"
        return {"rows": self.rows, "detail": self.detail, "examples": self.examples}


@dataclass
class ContractReport:
    """The contract's verdict on one day: every check, in order, and where the Markdown report went."""

    date: str
    events: int
    articles: int
    checks: list[CheckResult]
    enforced: bool = True
    report_path: str = ""

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.failed]

    @property
    def passed(self) -> bool:
        return not self.failures

    def headline(self) -> str:
        """One line: the failed checks with their row counts."""
        if self.passed:
            return f"data contract of {self.date}: all {len(self.checks)} checks passed"
        named = ", ".join(f"{c.name} ({c.detail})" for c in self.failures)
        return f"data contract of {self.date} failed {len(self.failures)} of {len(self.checks)} checks: {named}"

    def summary(self) -> dict[str, Any]:
        """The run summary's ``validate``: passed or not, counts, and each check's outcome."""
        return {
            "passed": self.passed,
            "enforced": self.enforced,
            "events": self.events,
            "articles": self.articles,
            "failed": [c.name for c in self.failures],
            "skipped": [c.name for c in self.checks if c.status == "skipped"],
            "checks": {c.name: c.summary() for c in self.checks},
            "report": self.report_path,
        }

    def markdown(self) -> str:
        verdict = "passed" if self.passed else f"FAILED ({len(self.failures)} of {len(self.checks)} checks)"
        lines = [
            f"# Data contract of {self.date}: {verdict}",
            "",
            f"Silver events of {self.date}: {self.events:,} rows. Article table: {self.articles:,} rows.",
        ]
        if not self.passed and not self.enforced:
            lines += ["", "Not enforced (`RECO_CONTRACT_ENFORCE=false`): the run went on."]
        lines += ["", "| check | column | result | rows | detail |", "|---|---|---|---|---|"]
        for c in self.checks:
            detail = c.detail.replace("|", "\\|") or c.rule
            lines.append(f"| `{c.name}` | {c.column or ''} | {c.status} | {c.rows if c.failed else ''} | {detail} |")
        for c in self.failures:
            lines += ["", f"## `{c.name}`", "", f"Rule: {c.rule}.", "", f"Found: {c.detail}."]
            if c.examples:
                names = list(dict.fromkeys(k for e in c.examples for k in e))
                lines += ["", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
                lines += ["| " + " | ".join(str(e.get(n, "")) for n in names) + " |" for e in c.examples]
        return "\n".join(lines) + "\n"


class ContractError(DataContractError):
    """D broke the contract: the one-line reason, and the report for the summary."""

    def __init__(self, report: ContractReport):
        self.report = report
        super().__init__(f"{report.headline()}; report {report.report_path}")


# --- the rules --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """A named pandera check on one column, its rule in words, and how its failure is described."""

    name: str
    column: str
    rule: str
    test: Callable[[pd.Series], pd.Series]  # True where the row is fine
    describe: Callable[[int], str]
    ignore_na: bool = True  # null rates see the nulls; every other rule judges values only

    def check(self) -> Check:
        return Check(self.test, ignore_na=self.ignore_na, name=self.name)


def _null_rate(series: pd.Series, applies: pd.Series, max_rate: float, *, once_logged: bool) -> pd.Series:
    """True where the row is fine; the missing rows fail only when their share of ``applies`` is above ``max_rate``
    (with ``once_logged``, a column that no applicable row carries is not judged)."""
    missing = series.isna() & applies
    n_applies, n_missing = int(applies.sum()), int(missing.sum())
    judged = n_applies > 0 and not (once_logged and n_missing == n_applies)
    if judged and n_missing > max_rate * n_applies:
        return ~missing
    return pd.Series(True, index=series.index)


def _share(n: int, of: int) -> str:
    return f"{n:,} of {of:,} ({n / of:.1%})" if of else f"{n:,}"


def _null_rule(table: str, column: str, applies: pd.Series, what: str, max_rate: float, *, once_logged: bool) -> _Rule:
    """``table.nulls.column``: the rows ``applies`` marks (called ``what``) that lack ``column``."""
    n_applies = int(applies.sum())
    rule = (
        f"once the day's {what} carry {column}, at most {max_rate:.1%} of them lack it"
        if once_logged
        else f"no {what.rstrip('s')} without {column}"
    )

    def test(series: pd.Series) -> pd.Series:
        return _null_rate(series, applies, max_rate, once_logged=once_logged)

    def describe(n: int) -> str:
        return f"{_share(n, n_applies)} {what} lack {column}"

    return _Rule(f"{table}.nulls.{column}", column, rule, test, describe, ignore_na=False)


def _event_rules(frame: pd.DataFrame, settings: Settings, day: dt.date, article_ids: pd.Index) -> list[_Rule]:
    types = frame["event_type"] if "event_type" in frame else pd.Series("", index=frame.index)
    every = pd.Series(True, index=frame.index)
    rules = [_null_rule("events", c, every, "events", 0.0, once_logged=False) for c in REQUIRED_EVENT_COLUMNS]
    rules += [
        _null_rule("events", column, types == kind, f"{kind}s", settings.contract_max_null_rate, once_logged=True)
        for column, kind in TYPED_COLUMNS
    ]
    start = pd.Timestamp(day, tz="UTC")
    end = start + pd.Timedelta(days=1)
    engaged = types.isin(ENGAGED_TYPES)
    n_engaged = int(engaged.sum())
    max_orphans = settings.contract_max_orphan_rate
    max_dwell, max_position = settings.contract_max_dwell_ms, settings.contract_max_position
    rules += [
        _Rule("events.unique_event_id", "event_id", "each event_id once",
              lambda s: ~s.duplicated(keep=False), lambda n: f"{n:,} rows share an event_id"),
        _Rule("events.event_type", "event_type", f"event_type one of {', '.join(EVENT_TYPES)}",
              lambda s: s.isin(EVENT_TYPES), lambda n: f"{n:,} rows of another type"),
        _Rule("events.dwell_range", "dwell_ms", f"0 <= dwell_ms <= {max_dwell:,}",
              lambda s: s.between(0, max_dwell), lambda n: f"{n:,} rows outside [0, {max_dwell:,}] ms"),
        _Rule("events.position_range", "position", f"0 <= position <= {max_position} (0-based)",
              lambda s: s.between(0, max_position), lambda n: f"{n:,} rows outside [0, {max_position}]"),
        _Rule("events.propensity_range", "propensity", "0 < propensity <= 1",
              lambda s: (s > 0) & (s <= 1), lambda n: f"{n:,} rows outside (0, 1]"),
        _Rule("events.in_day", "ts", f"ts inside [{day} 00:00, {day + dt.timedelta(days=1)} 00:00) UTC",
              lambda s: (s >= start) & (s < end), lambda n: f"{_share(n, len(frame))} rows dated outside {day}"),
        _Rule("events.article_exists", "article_id",
              f"clicked and read articles are in the article table (at most {max_orphans:.1%} not)",
              lambda s: _orphans_ok(s, engaged, article_ids, max_orphans),
              lambda n: f"{_share(n, n_engaged)} click/read rows name an article the article table lacks"),
    ]  # fmt: skip
    return rules


def _orphans_ok(series: pd.Series, engaged: pd.Series, known: pd.Index, max_rate: float) -> pd.Series:
    orphan = engaged & ~series.isin(known)
    if int(orphan.sum()) > max_rate * int(engaged.sum()):
        return ~orphan
    return pd.Series(True, index=series.index)


def _article_rules(frame: pd.DataFrame) -> list[_Rule]:
    every = pd.Series(True, index=frame.index)
    rules = [_null_rule("articles", c, every, "articles", 0.0, once_logged=False) for c in REQUIRED_ARTICLE_COLUMNS]
    rules.append(_Rule("articles.unique_article_id", "article_id", "one row per article_id",
                       lambda s: ~s.duplicated(keep=False), lambda n: f"{n:,} rows share an article_id"))  # fmt: skip
    return rules


def _dtype(field: pa.Field) -> Any:
    if pa.types.is_string(field.type):
        return str
    if pa.types.is_timestamp(field.type):
        return pd.DatetimeTZDtype(unit=field.type.unit, tz=field.type.tz)
    return _PANDAS_TYPES.get(field.type, field.type.to_pandas_dtype())


def _schema(name: str, arrow: pa.Schema, rules: list[_Rule]) -> DataFrameSchema:
    """Columns and types from the Arrow schema (``strict``: no other column), the rules as named checks."""
    checks: dict[str, list[Check]] = {f.name: [] for f in arrow}
    for rule in rules:
        checks[rule.column].append(rule.check())
    columns = {f.name: Column(_dtype(f), checks=checks[f.name], nullable=True) for f in arrow}
    return DataFrameSchema(columns, strict=True, name=name)


# --- running them -----------------------------------------------------------------------------------


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A lake table as pandas, integers nullable, so a type in the lake is a dtype here."""
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


def _run(
    table: str, schema: DataFrameSchema, frame: pd.DataFrame, rules: list[_Rule], key: str, examples: int
) -> list[CheckResult]:
    """Validate lazily (every check runs); one result for the columns, one for the types, one per rule."""
    results = {
        "columns": CheckResult(f"{table}.columns", table, None, "exactly the columns of the contract"),
        "types": CheckResult(f"{table}.types", table, None, "each column of its contract type"),
    }
    results |= {r.name: CheckResult(r.name, table, r.column, r.rule) for r in rules}
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        by_rule = {r.name: r for r in rules}
        for check, group in cases.groupby(cases["check"].astype(str), sort=False):
            if check in ("column_in_schema", "column_in_dataframe"):
                result = results["columns"]
                extra = sorted(group.loc[group["check"] == "column_in_schema", "failure_case"].astype(str))
                missing = sorted(group.loc[group["check"] == "column_in_dataframe", "failure_case"].astype(str))
                result.rows += len(group)
                parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
                    [f"unexpected column(s) {', '.join(extra)}"] if extra else []
                )
                result.detail = "; ".join(filter(None, [result.detail, *parts]))
            elif check.startswith("dtype("):
                result = results["types"]
                wrong = [f"{c} is {frame[c].dtype}, not {check[7:-2]}" for c in group["column"].astype(str)]
                result.rows += len(wrong)
                result.detail = "; ".join(filter(None, [result.detail, *wrong]))
            elif check in by_rule:
                rule = by_rule[check]
                result = results[check]
                index = pd.Index(group["index"].dropna().unique())
                if index.empty:  # the check raised: its column is not of the contract's type (events.types says so)
                    result.status = "skipped"
                    result.detail = f"could not run on {rule.column}: {group['failure_case'].iloc[0]}"
                    continue
                result.rows = len(index)
                result.detail = rule.describe(len(index))
                shown = frame.loc[index[:examples], [c for c in dict.fromkeys((key, "event_type", rule.column)) if c in frame]]
                result.examples = [_plain(row) for row in shown.to_dict("records")]
            else:  # no other pandera check is declared
                continue
            result.status = "failed"
    return list(results.values())


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if pd.isna(v) else v.isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in row.items()}


def _volume(settings: Settings, day: dt.date, rows: int) -> CheckResult:
    """Rows of D against the median of the earlier days with events (a missing day is not a zero)."""
    low, high = settings.contract_volume_min_ratio, settings.contract_volume_max_ratio
    span = settings.contract_volume_days
    result = CheckResult(
        "events.volume", "events", None, f"rows of D within {low:.0%}..{high:.0%} of the median of the {span} days before"
    )
    earlier = {}
    for back in range(1, span + 1):
        past = day - dt.timedelta(days=back)
        files = partition_files(settings.silver_events_dir, past)
        if files:
            earlier[past] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if len(earlier) < settings.contract_volume_min_days:
        result.status = "skipped"
        result.detail = (
            f"{len(earlier)} earlier day(s) with events in the {span} before {day}, "
            f"{settings.contract_volume_min_days} needed"
        )
        return result
    median = float(statistics.median(earlier.values()))
    stats = pd.DataFrame({"rows": [rows], "median": [median], "ratio": [rows / median if median else float("inf")]})
    schema = DataFrameSchema(
        {"ratio": Column(float, Check(lambda s: s.between(low, high), name=result.name))}, name="volume"
    )
    ratio = stats["ratio"].iloc[0]
    result.detail = f"{rows:,} rows, {ratio:.0%} of the median {median:,.0f} of {len(earlier)} earlier days"
    try:
        schema.validate(stats, lazy=True)
    except SchemaErrors:
        result.status = "failed"
        result.rows = rows
        result.examples = [{"date": d.isoformat(), "rows": n} for d, n in sorted(earlier.items())]
    return result


def check_contract(settings: Settings, day: dt.date) -> ContractReport:
    """Every check of the contract on D's silver events and the article table (nothing is written)."""
    if not partition_files(settings.silver_events_dir, day):
        raise NoDataError(
            f"no silver events for {day} under {partition_dir(settings.silver_events_dir, day)}; run the ingest step first"
        )
    events = to_frame(read_partition(settings.silver_events_dir, day))
    path = settings.silver_articles_path
    articles = to_frame(pq.read_table(path) if path.is_file() else ARTICLE_SCHEMA.empty_table())
    known = pd.Index(articles["article_id"].dropna().unique()) if "article_id" in articles else pd.Index([])
    examples = settings.contract_examples

    event_rules = _event_rules(events, settings, day, known)
    article_rules = _article_rules(articles)
    checks = _run("events", _schema("events", EVENT_SCHEMA, event_rules), events, event_rules, "event_id", examples)
    checks.append(_volume(settings, day, len(events)))
    checks += _run(
        "articles", _schema("articles", ARTICLE_SCHEMA, article_rules), articles, article_rules, "article_id", examples
    )
    return ContractReport(day.isoformat(), len(events), len(articles), checks, enforced=settings.contract_enforce)


def report_path(settings: Settings, day: dt.date) -> Path:
    return settings.workdir / "reports" / day.isoformat() / "contract.md"


def validate_day(settings: Settings, day: dt.date) -> ContractReport:
    """The ``validate`` step: check D, write ``reports/<D>/contract.md``, raise ``ContractError`` on a failure
    (unless ``settings.contract_enforce`` is false: then the failure is reported and the run goes on)."""
    report = check_contract(settings, day)
    path = report_path(settings, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    report.report_path = str(path)
    tmp.write_text(report.markdown())
    tmp.replace(path)
    if not report.passed and report.enforced:
        raise ContractError(report)
    return report
