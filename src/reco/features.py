"""Daily feature snapshots: silver events -> ``user_stats`` and ``article_stats`` tables.

A snapshot of day D describes every entity "as of the end of D": its ``event_ts`` is
D+1 00:00:00 UTC and it is computed only from events with ``ts < event_ts``. A training row
at time t therefore joins (point-in-time, through Feast) the snapshot of the day before t's
day, and serving on day D+1 reads the snapshot of D: no feature ever sees its own label.

Windows are read from exactly the silver partitions they need (D-29..D for 30 days, D-6..D for
7 days, D for 24 hours) with duckdb, and every query also filters on ``ts`` so a window is
correct even if a partition held an event of a neighbouring day.

Output, one partition per day (rewritten on re-run, never appended)::

    features/user_stats/date=D/part-0.parquet     USER_STATS_SCHEMA, users active in D-29..D
    features/article_stats/date=D/part-0.parquet  ARTICLE_STATS_SCHEMA, fresh or active articles

Choices where the contract was open:

* ``read_ratio_7d`` = reads / clicks over 7 days, capped at 1 (a read logged without its click
  must not push the ratio past "reads everything"), 0 when there is no click.
* ``avg_session_len_s``: 0 when the user has no event in the last 7 days.
* ``category_clicks``: JSON object ``{"category": clicks}`` over 30 days, most clicked first;
  ``clicks_30d`` is its total, so affinity = count / clicks_30d.
* ``ctr_24h`` is smoothed towards the day's global CTR with ``CTR_PRIOR_IMPRESSIONS`` pseudo
  impressions: (clicks + k·p) / (views + k), capped at 1. A fresh article with 3 views and
  1 click gets ~p, not 0.33; a raw CTR on a handful of views is noise the ranker would overfit.
* ``avg_read_time_s``: mean dwell of reads over 7 days, 0 when the article has no read yet
  (``reads_7d`` = 0 tells the ranker the two cases apart).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from reco.errors import InputFileError, NoDataError
from reco.lake import partition_files, replace_partition
from reco.schemas import UNKNOWN_CATEGORY
from reco.settings import Settings

USER_TABLE = "user_stats"
ARTICLE_TABLE = "article_stats"

# Pseudo-impressions of the global CTR added to every article's 24h CTR (see module docstring).
CTR_PRIOR_IMPRESSIONS = 20.0
# Events of one user further apart than this start a new session.
SESSION_GAP_S = 30 * 60
# Serving excludes already-read articles; 100 covers a heavy reader's month on a news site.
RECENT_READS_MAX = 100
USER_WINDOW_DAYS = 30
SHORT_WINDOW_DAYS = 7
# Articles published this many days before event_ts or less get a row even without events
# (candidates for "fresh"); independent of the Feast TTL, which only says how long a row stays valid.
ARTICLE_FRESH_DAYS = 7

USER_STATS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("event_ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("clicks_7d", pa.int64(), nullable=False),
        pa.field("read_ratio_7d", pa.float64(), nullable=False),
        pa.field("avg_session_len_s", pa.float64(), nullable=False),
        pa.field("top_category", pa.string()),
        pa.field("recent_reads", pa.list_(pa.string()), nullable=False),
        pa.field("category_clicks", pa.string(), nullable=False),
        pa.field("clicks_30d", pa.int64(), nullable=False),
    ]
)

ARTICLE_STATS_SCHEMA = pa.schema(
    [
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("event_ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("views_24h", pa.int64(), nullable=False),
        pa.field("clicks_24h", pa.int64(), nullable=False),
        pa.field("ctr_24h", pa.float64(), nullable=False),
        pa.field("avg_read_time_s", pa.float64(), nullable=False),
        pa.field("reads_7d", pa.int64(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("published_at", pa.timestamp("us", tz="UTC")),
        pa.field("age_hours", pa.float64()),
    ]
)


@dataclass
class FeatureReport:
    """What one ``build_features`` run wrote.

    ``users`` / ``articles``: distinct ids with at least one event on D; ``user_rows`` /
    ``article_rows``: rows of the day's snapshots (30-day active users; fresh or active articles).
    """

    users: int
    articles: int
    user_rows: int
    article_rows: int
    seconds: float


def snapshot_ts(day: dt.date) -> dt.datetime:
    """The ``event_ts`` of day D's snapshot: D+1 00:00:00 UTC."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def feature_table_dir(settings: Settings, table: str) -> Path:
    """Root folder (holding ``date=`` partitions) of one feature table."""
    return settings.features_dir / table


def _window_files(settings: Settings, day: dt.date, days: int) -> list[Path]:
    """Silver event files of D-(days-1)..D that exist, oldest first."""
    files: list[Path] = []
    for back in range(days - 1, -1, -1):
        files.extend(partition_files(settings.silver_events_dir, day - dt.timedelta(days=back)))
    return files


def _events_view(
    con: duckdb.DuckDBPyConnection, name: str, files: list[Path], start: dt.datetime, end: dt.datetime
) -> None:
    """A view of events in [start, end) over exactly ``files`` (an empty view when there are none)."""
    columns = "ts, user_id, article_id, event_type, dwell_ms"
    if files:
        listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        con.execute(
            f"CREATE TEMP VIEW {name} AS SELECT {columns} FROM read_parquet([{listed}]) "
            f"WHERE ts >= TIMESTAMPTZ '{start.isoformat()}' AND ts < TIMESTAMPTZ '{end.isoformat()}'"
        )
    else:
        con.execute(
            f"CREATE TEMP VIEW {name} AS SELECT NULL::TIMESTAMPTZ AS ts, NULL::VARCHAR AS user_id, "
            "NULL::VARCHAR AS article_id, NULL::VARCHAR AS event_type, NULL::BIGINT AS dwell_ms WHERE false"
        )


_USER_SQL = """
WITH users AS (SELECT DISTINCT user_id FROM ev30),
counts7 AS (
    SELECT user_id,
           count(*) FILTER (WHERE event_type = 'click') AS clicks,
           count(*) FILTER (WHERE event_type = 'read') AS reads
    FROM ev7 GROUP BY user_id
),
gaps AS (
    SELECT user_id, ts,
           CASE WHEN lag(ts) OVER w IS NULL OR epoch(ts) - epoch(lag(ts) OVER w) > $gap THEN 1 ELSE 0 END AS starts
    FROM ev7 WINDOW w AS (PARTITION BY user_id ORDER BY ts)
),
sessions AS (
    -- Slate impressions share one ts: among ties the session start must come first, or a tied row
    -- would fall into the previous session and the result would depend on scan order.
    SELECT user_id, ts,
           sum(starts) OVER (PARTITION BY user_id ORDER BY ts, starts DESC ROWS UNBOUNDED PRECEDING) AS session
    FROM gaps
),
session_len AS (
    SELECT user_id, avg(len_s) AS avg_len_s FROM (
        SELECT user_id, session, epoch(max(ts)) - epoch(min(ts)) AS len_s FROM sessions GROUP BY user_id, session
    ) GROUP BY user_id
),
cat_clicks AS (
    SELECT e.user_id, a.category, count(*) AS n, max(e.ts) AS last_ts
    FROM ev30 e JOIN articles a ON a.article_id = e.article_id
    WHERE e.event_type = 'click' AND a.category IS NOT NULL AND a.category <> $unknown
    GROUP BY e.user_id, a.category
),
cats AS (
    SELECT user_id,
           first(category ORDER BY n DESC, last_ts DESC, category) AS top_category,
           '{' || string_agg(to_json(category) || ':' || n, ',' ORDER BY n DESC, category) || '}' AS category_clicks
    FROM cat_clicks GROUP BY user_id
),
clicks30 AS (SELECT user_id, count(*) AS n FROM ev30 WHERE event_type = 'click' GROUP BY user_id),
touched AS (
    SELECT user_id, article_id, max(ts) AS last_ts FROM ev30
    WHERE event_type IN ('click', 'read') GROUP BY user_id, article_id
),
recent AS (
    SELECT user_id, list(article_id ORDER BY last_ts DESC, article_id)[1:$max_reads] AS recent_reads
    FROM touched GROUP BY user_id
)
SELECT u.user_id,
       $t::TIMESTAMPTZ AS event_ts,
       coalesce(c.clicks, 0)::BIGINT AS clicks_7d,
       CASE WHEN coalesce(c.clicks, 0) = 0 THEN 0.0 ELSE least(c.reads / c.clicks, 1.0) END::DOUBLE AS read_ratio_7d,
       coalesce(s.avg_len_s, 0.0)::DOUBLE AS avg_session_len_s,
       k.top_category,
       coalesce(r.recent_reads, []::VARCHAR[]) AS recent_reads,
       coalesce(k.category_clicks, '{}') AS category_clicks,
       coalesce(c30.n, 0)::BIGINT AS clicks_30d
FROM users u
LEFT JOIN counts7 c USING (user_id)
LEFT JOIN session_len s USING (user_id)
LEFT JOIN cats k USING (user_id)
LEFT JOIN clicks30 c30 USING (user_id)
LEFT JOIN recent r USING (user_id)
ORDER BY u.user_id
"""

_ARTICLE_SQL = """
WITH candidates AS (
    SELECT article_id FROM articles WHERE published_at <= $t AND published_at > $fresh_since
    UNION
    SELECT DISTINCT article_id FROM ev1
),
day AS (
    SELECT article_id,
           count(*) FILTER (WHERE event_type = 'impression') AS views,
           count(*) FILTER (WHERE event_type = 'click') AS clicks
    FROM ev1 GROUP BY article_id
),
prior AS (
    SELECT CASE WHEN coalesce(sum(views), 0) > 0 THEN sum(clicks) / sum(views) ELSE 0.0 END AS p FROM day
),
reads AS (
    SELECT article_id, avg(dwell_ms) / 1000.0 AS avg_read_s, count(*) AS n
    FROM ev7 WHERE event_type = 'read' AND dwell_ms IS NOT NULL GROUP BY article_id
)
SELECT c.article_id,
       $t::TIMESTAMPTZ AS event_ts,
       coalesce(d.views, 0)::BIGINT AS views_24h,
       coalesce(d.clicks, 0)::BIGINT AS clicks_24h,
       least((coalesce(d.clicks, 0) + $k * prior.p) / (coalesce(d.views, 0) + $k), 1.0)::DOUBLE AS ctr_24h,
       coalesce(r.avg_read_s, 0.0)::DOUBLE AS avg_read_time_s,
       coalesce(r.n, 0)::BIGINT AS reads_7d,
       a.category,
       a.published_at,
       greatest(epoch($t::TIMESTAMPTZ) - epoch(a.published_at), 0) / 3600.0 AS age_hours
FROM candidates c
CROSS JOIN prior
LEFT JOIN articles a USING (article_id)
LEFT JOIN day d USING (article_id)
LEFT JOIN reads r USING (article_id)
ORDER BY c.article_id
"""


def build_features(
    settings: Settings,
    day: dt.date,
    *,
    ctr_prior_impressions: float = CTR_PRIOR_IMPRESSIONS,
    article_fresh_days: int = ARTICLE_FRESH_DAYS,
) -> FeatureReport:
    """Compute and write the user and article snapshots of ``day`` (idempotent).

    Reads silver partitions D-29..D and the silver article table; writes one partition per
    table for D. Raises ``NoDataError`` when the 30 days up to D hold no silver events and
    ``InputFileError`` when the article table is missing.
    """
    started = time.perf_counter()
    # A day without events of its own (e.g. only late arrivals landed) still has a snapshot:
    # the users and articles of the days before it. Only an empty 30-day window is an error.
    if not _window_files(settings, day, USER_WINDOW_DAYS):
        raise NoDataError(
            f"no silver events in the {USER_WINDOW_DAYS} days up to {day} under {settings.silver_events_dir}; "
            "run ingest first"
        )
    articles_path = settings.silver_articles_path
    if not articles_path.is_file():
        raise InputFileError(articles_path, "silver article table is missing; run ingest first")

    end = snapshot_ts(day)
    con = duckdb.connect()
    try:
        # Timestamps cross the boundary as UTC whatever the host's zone is.
        con.execute("SET TimeZone = 'UTC'")
        _events_view(
            con, "ev30", _window_files(settings, day, USER_WINDOW_DAYS), end - dt.timedelta(days=USER_WINDOW_DAYS), end
        )
        _events_view(
            con, "ev7", _window_files(settings, day, SHORT_WINDOW_DAYS), end - dt.timedelta(days=SHORT_WINDOW_DAYS), end
        )
        _events_view(con, "ev1", _window_files(settings, day, 1), end - dt.timedelta(days=1), end)
        path = str(articles_path).replace("'", "''")
        con.execute(
            f"CREATE TEMP VIEW articles AS SELECT article_id, published_at, category FROM read_parquet('{path}')"
        )

        users = con.sql(
            _USER_SQL, params={"t": end, "gap": SESSION_GAP_S, "max_reads": RECENT_READS_MAX, "unknown": UNKNOWN_CATEGORY}
        ).to_arrow_table()
        fresh_since = end - dt.timedelta(days=article_fresh_days)
        articles = con.sql(
            _ARTICLE_SQL, params={"t": end, "fresh_since": fresh_since, "k": float(ctr_prior_impressions)}
        ).to_arrow_table()
        ((active_users, active_articles),) = con.sql(
            "SELECT count(DISTINCT user_id), count(DISTINCT article_id) FROM ev1"
        ).fetchall()
    finally:
        con.close()

    users = users.select(USER_STATS_SCHEMA.names).cast(USER_STATS_SCHEMA)
    articles = articles.select(ARTICLE_STATS_SCHEMA.names).cast(ARTICLE_STATS_SCHEMA)
    replace_partition(users, feature_table_dir(settings, USER_TABLE), day)
    replace_partition(articles, feature_table_dir(settings, ARTICLE_TABLE), day)
    return FeatureReport(
        users=int(active_users),
        articles=int(active_articles),
        user_rows=users.num_rows,
        article_rows=articles.num_rows,
        seconds=round(time.perf_counter() - started, 3),
    )


def read_snapshot(settings: Settings, table: str, day: dt.date) -> pa.Table:
    """One day's snapshot of ``table`` (``user_stats`` or ``article_stats``); empty if never built."""
    schema = USER_STATS_SCHEMA if table == USER_TABLE else ARTICLE_STATS_SCHEMA
    files = partition_files(feature_table_dir(settings, table), day)
    return pq.read_table(files[0], schema=schema) if files else schema.empty_table()
