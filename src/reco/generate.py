"""Synthetic news-site traffic: articles, users and the impressions, clicks and reads they produce.

What it models (all vectorised numpy, deterministic for a seed, generated and written day by day so
memory stays bounded by one day of traffic):

* **Articles** published continuously over the period (and a few days before it, so day 1 has a
  catalogue), each with a category (13 categories of unequal size), a title, an optional abstract, a
  latent quality, a latent taste vector and a freshness half-life (hours to two days).
* **Users** with concentrated category preferences (Dirichlet: most users have 1-3 favourites), a latent
  taste vector (so users with similar tastes click the same articles *within* a category, which only
  collaborative filtering can learn) and heavy-tailed activity (lognormal sessions per day).
* **Sessions** at diurnal hours; each shows one or more slates of ``SLATE_SIZE`` articles ranked by a
  stochastic **logging policy** (Plackett-Luce over a popularity + recency + user-category score mixed
  with uniform exploration), whose per-slot probability is logged as ``propensity``.
* **Clicks** = position bias ``1/log2(pos+2)`` x relevance, relevance = affinity(user category
  preference, taste match, quality) x freshness ``2**(-age/half_life)``. A share of clicks becomes a
  ``read`` with a lognormal ``dwell_ms`` (seconds to minutes, longer when more relevant).
* **Drift** (``drift_day=K``): from day K a large share of users move their preferences towards two
  "trending" categories and change activity, the newsroom publishes more in those categories (a big
  story breaks), and the logging policy catches up with the users only halfway.
* **Log noise**: ~0.2% of events delivered twice (same ``event_id``), ~0.5% arriving a day late (written
  to the next day's bronze partition, ``ts`` unchanged). No invalid rows.

Randomness comes from independent streams keyed by ``(seed, purpose[, day])``, so a day's traffic depends
only on the seed, the population and the day: the days before a drift day are identical with and without
drift, which the tests use.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reco.errors import RecoError
from reco.importers import DERIVED_PREFIX
from reco.lake import append_batch, partition_dir, write_atomic
from reco.oracle import write_manifest
from reco.schemas import ARTICLE_SCHEMA, EVENT_SCHEMA, UNKNOWN_CATEGORY
from reco.settings import Settings

DAY_S = 86_400.0
# What kind of site is simulated: a news site (this module) or one whose items live for months (``reco.evergreen``).
Catalog = Literal["news", "evergreen"]
CATALOGS: tuple[str, ...] = ("news", "evergreen")
SLATE_SIZE = 10
MODEL_VERSION = "logging-policy"
VARIANT = "stable"
EVENT_TYPE_NAMES = ("impression", "click", "read")

# Categories and their share of published articles (unequal on purpose: news dominates, music is niche).
CATEGORIES: tuple[str, ...] = (
    "news", "sports", "finance", "lifestyle", "entertainment", "health", "tech",
    "travel", "foodanddrink", "autos", "weather", "science", "music",
)  # fmt: skip
CATEGORY_SHARES = np.array([0.22, 0.14, 0.10, 0.09, 0.08, 0.07, 0.07, 0.05, 0.05, 0.04, 0.03, 0.03, 0.03])

# Relative session starts per UTC hour: quiet nights, morning commute, lunch and evening peaks.
HOUR_WEIGHTS = np.array(
    [0.25, 0.15, 0.10, 0.08, 0.08, 0.15, 0.40, 0.90, 1.30, 1.20, 1.00, 1.00,
     1.20, 1.10, 0.95, 0.90, 0.95, 1.00, 1.15, 1.35, 1.45, 1.30, 0.90, 0.50]
)  # fmt: skip
# Publishing happens mostly in newsroom hours.
PUBLISH_HOUR_WEIGHTS = np.array(
    [0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 1.5, 1.8, 1.8, 1.6, 1.5,
     1.4, 1.4, 1.4, 1.3, 1.2, 1.1, 1.0, 0.9, 0.8, 0.6, 0.4, 0.3]
)  # fmt: skip

# The knobs of the simulation, gathered so their effect can be read in one place.
PRE_PERIOD_DAYS = 3  # articles published this many days before day 1 seed the catalogue
PRE_PERIOD_SHARE = 0.12  # share of all articles published in that pre-period
DIRICHLET_TOTAL = 1.8  # sum of Dirichlet alphas: small => concentrated preferences (1-3 favourites)
TASTE_DIM = 4  # latent taste dimensions shared by users and articles
TASTE_SCALE = 0.55  # std of each taste coordinate: taste match logit has std ~0.6
MEAN_SESSIONS_PER_DAY = 0.40  # mean over users of expected sessions per day
ACTIVITY_SIGMA = 1.1  # lognormal sigma of per-user activity: many light users, few heavy ones
WEEKEND_FACTOR = 0.85
EXTRA_SLATES_MEAN = 0.6  # slates per session = 1 + Poisson(this)
MAX_AGE_S = 72 * 3600.0  # the logging policy does not show articles older than this (unless starved)
POLICY_RECENCY_S = 18 * 3600.0  # logging policy score decays by e every this many seconds of age
POLICY_EXPLORATION = 0.10  # share of uniform exploration mixed into the logging policy
HALF_LIFE_MEDIAN_S = 24 * 3600.0  # median article half-life (lognormal, clipped to [4 h, 72 h])
POLICY_PERSONALISATION = 1.0  # exponent on the policy's smoothed, lagging view of category preferences
CLICK_BASE_LOGIT = -2.6
QUALITY_SD = 0.6  # std of an article's latent quality (logit units)
POLICY_PRIOR_NOISE_SD = 0.5  # the logging policy's estimate of quality = quality + N(0, this)
CLICK_CATEGORY_WEIGHT = 1.0  # logit per unit of log(n_categories * preference)
READ_BASE = 0.45  # P(read | click) = READ_BASE + READ_SLOPE * relevance
READ_SLOPE = 0.40
DUPLICATE_SHARE = 0.002
LATE_SHARE = 0.005
DRIFT_USER_SHARE = 0.7
DRIFT_KEEP = 0.2  # drifted preference = DRIFT_KEEP * old + (1 - DRIFT_KEEP) * new trending preference
# After the drift the site's own recommender catches up only halfway: it sees the mean of the old and
# the new preferences, so drifted users are shown less of what they now want than they would click,
# but enough of it for their clicks, and so top_category, to move.
DRIFT_POLICY_CATCH_UP = 0.5
DRIFT_SUPPLY_SHARE = 0.3  # from the drift day, this share of new articles is about a trending category
DRIFT_ACTIVITY_LOG_MEAN = 0.6  # drifted users' sessions per day are multiplied by lognormal(this, 0.5): ~2x on average
# Expected events per user-day with the knobs above; measured, used to size benchmarks.
EVENTS_PER_USER_DAY = 6.9
ARTICLES_PER_DAY = 150

_ADJECTIVES = (
    "unexpected", "record", "quiet", "bold", "new", "late", "rare", "historic", "fresh", "surprising",
    "major", "small", "local", "global", "final", "early", "hidden", "rising", "falling", "strong",
)  # fmt: skip
_VERBS = (
    "shakes up", "returns to", "arrives in", "divides", "wins over", "puzzles", "lifts", "hits",
    "reshapes", "splits", "boosts", "worries", "delights", "lands in", "fades in", "sweeps",
)  # fmt: skip
_PLACES = (
    "Lisbon", "Oslo", "Nairobi", "Osaka", "Denver", "Lyon", "Seoul", "Porto", "Quito", "Perth",
    "Leeds", "Bergen", "Austin", "Cork", "Graz", "Turin", "Malmo", "Hobart", "Accra", "Tartu",
)  # fmt: skip
_TOPICS: dict[str, tuple[str, ...]] = {
    "news": ("election", "council vote", "court ruling", "protest", "policy shift", "summit"),
    "sports": ("derby", "transfer", "title race", "marathon", "comeback", "final whistle"),
    "finance": ("rate decision", "earnings report", "merger", "market rally", "bond sale", "budget"),
    "lifestyle": ("home trend", "wellness habit", "fashion week", "parenting tip", "garden idea"),
    "entertainment": ("film premiere", "streaming hit", "award show", "celebrity split", "box office"),
    "health": ("vaccine study", "sleep research", "diet trial", "hospital plan", "fitness fad"),
    "tech": ("chip launch", "app update", "data breach", "AI model", "phone release", "startup"),
    "travel": ("rail route", "island escape", "airline deal", "city break", "hidden beach"),
    "foodanddrink": ("street food", "wine harvest", "bakery", "chef's menu", "coffee trend"),
    "autos": ("electric SUV", "recall", "race car", "charging network", "used-car market"),
    "weather": ("heatwave", "storm", "cold snap", "flood warning", "early frost"),
    "science": ("telescope image", "fossil find", "climate study", "space mission", "gene study"),
    "music": ("album drop", "festival lineup", "world tour", "vinyl revival", "debut single"),
}


@dataclass
class GenerateReport:
    """What ``generate`` wrote.

    ``events`` counts bronze rows written, duplicate deliveries included; ``impressions``, ``clicks``
    and ``reads`` count distinct events (so they sum to ``events - duplicates``). ``late`` counts events
    written to the partition after their ``ts`` day. ``users``/``articles``/``days`` echo the request;
    ``start``/``end`` are the first and last day (ISO dates, UTC); ``seconds`` is wall time.
    """

    events: int
    impressions: int
    clicks: int
    reads: int
    users: int
    articles: int
    days: int
    start: str
    end: str
    duplicates: int
    late: int
    seconds: float
    catalog: str = "news"
    articles_derived: int = 0  # article rows derived from the log (``write_articles=False``)


@dataclass
class Catalogue:
    """The generated articles, sorted by publication time (index ``i`` is article ``a{i:06d}``).

    Arrays have shape ``(n_articles,)`` except ``taste`` ``(n_articles, TASTE_DIM)``.
    ``published_s``: seconds since midnight UTC of day 1 (negative for the pre-period).
    ``half_life_s``: seconds after which a reader's interest halves.
    """

    published_s: np.ndarray
    category: np.ndarray  # int index into CATEGORIES
    quality: np.ndarray  # latent quality, logit units
    policy_prior: np.ndarray  # the site's noisy popularity estimate of quality (what the logging policy sees)
    half_life_s: np.ndarray
    taste: np.ndarray
    titles: list[str]
    abstracts: list[str | None]


@dataclass
class Population:
    """The generated users (index ``u`` is user ``u{u:06d}``).

    ``preference`` ``(n_users, n_categories)`` rows sum to 1 (before drift); ``drifted_preference`` the
    same after the drift day; ``drifted`` ``(n_users,)`` bool; ``activity`` / ``drifted_activity``
    ``(n_users,)`` expected sessions per day; ``taste`` ``(n_users, TASTE_DIM)``;
    ``policy_view`` / ``drifted_policy_view`` ``(n_users, n_categories)`` the logging policy's smoothed
    weight per category before / after the drift (lagging behind the users).
    """

    preference: np.ndarray
    drifted_preference: np.ndarray
    drifted: np.ndarray
    activity: np.ndarray
    drifted_activity: np.ndarray
    taste: np.ndarray
    policy_view: np.ndarray
    drifted_policy_view: np.ndarray
    trending: np.ndarray  # the categories drifted users move towards


def _rng(seed: int, *purpose: int) -> np.random.Generator:
    # One independent stream per (seed, purpose, day): changing one stream's draws never shifts another.
    return np.random.default_rng(np.random.SeedSequence([seed, *purpose]))


_STREAM_ARTICLES, _STREAM_USERS, _STREAM_DRIFT, _STREAM_DAY, _STREAM_NOISE, _STREAM_TRENDING = 1, 2, 3, 4, 5, 6


def trending_categories(seed: int) -> np.ndarray:
    """The two category indices that a drift moves users and the newsroom towards."""
    # Taken among the smaller half of the categories, so the shift is visible in the click mix.
    n_cat = len(CATEGORIES)
    return _rng(seed, _STREAM_TRENDING).choice(np.arange(n_cat // 2, n_cat), size=2, replace=False)


def size_for_events(n_events: int) -> dict[str, int]:
    """Users, articles and days that produce about ``n_events`` events.

    Sizing rule: 14 days (28 past 5M events, so the catalogue does not have to grow per day);
    ``ARTICLES_PER_DAY`` articles a day; users = n_events / (days * EVENTS_PER_USER_DAY), the measured
    mean events per user-day of this model.
    """
    days = 14 if n_events <= 5_000_000 else 28
    users = max(10, round(n_events / (days * EVENTS_PER_USER_DAY)))
    return {"users": users, "articles": days * ARTICLES_PER_DAY, "days": days}


def make_articles(seed: int, n_articles: int, days: int, drift_day: int | None = None) -> Catalogue:
    """The catalogue of one seed: ``n_articles`` sorted by publication time.

    With ``drift_day`` K, a ``DRIFT_SUPPLY_SHARE`` of the articles published from day K on is moved to a
    trending category; everything else (and every article before day K) is the same as without drift.
    """
    rng = _rng(seed, _STREAM_ARTICLES)
    n_pre = max(2 * SLATE_SIZE, round(PRE_PERIOD_SHARE * n_articles))
    n_main = n_articles - n_pre
    hour_p = PUBLISH_HOUR_WEIGHTS / PUBLISH_HOUR_WEIGHTS.sum()
    day_of = np.concatenate([rng.integers(-PRE_PERIOD_DAYS, 0, n_pre), rng.integers(0, days, n_main)])
    hours = rng.choice(24, size=n_articles, p=hour_p)
    published = np.sort(day_of * DAY_S + hours * 3600.0 + rng.uniform(0, 3600.0, n_articles))
    category = rng.choice(len(CATEGORIES), size=n_articles, p=CATEGORY_SHARES)
    # Drawn whether or not drift is asked, from their own stream, so no other draw moves.
    supply_rng = _rng(seed, _STREAM_DRIFT, 1)
    to_trending = supply_rng.random(n_articles) < DRIFT_SUPPLY_SHARE
    trending_pick = trending_categories(seed)[supply_rng.integers(0, 2, n_articles)]
    if drift_day is not None:
        moved = to_trending & (published >= (drift_day - 1) * DAY_S)
        category = np.where(moved, trending_pick, category)
    quality = rng.normal(0.0, QUALITY_SD, n_articles)
    policy_prior = quality + rng.normal(0.0, POLICY_PRIOR_NOISE_SD, n_articles)
    half_life = np.clip(rng.lognormal(np.log(HALF_LIFE_MEDIAN_S), 0.6, n_articles), 4 * 3600.0, 72 * 3600.0)
    taste = rng.normal(0.0, TASTE_SCALE, (n_articles, TASTE_DIM))
    picks = rng.integers(0, 1 << 30, (n_articles, 5))
    has_abstract = rng.random(n_articles) < 0.85
    titles, abstracts = _titles(category, picks, has_abstract)
    return Catalogue(published, category, quality, policy_prior, half_life, taste, titles, abstracts)


def _titles(category: np.ndarray, picks: np.ndarray, has_abstract: np.ndarray) -> tuple[list[str], list[str | None]]:
    """A title and an optional abstract per article from its category and five random ``picks``."""
    titles: list[str] = []
    abstracts: list[str | None] = []
    for i in range(len(category)):
        topics = _TOPICS[CATEGORIES[category[i]]]
        adj, topic, verb, place = (
            _ADJECTIVES[picks[i, 0] % len(_ADJECTIVES)],
            topics[picks[i, 1] % len(topics)],
            _VERBS[picks[i, 2] % len(_VERBS)],
            _PLACES[picks[i, 3] % len(_PLACES)],
        )
        titles.append(f"{adj.capitalize()} {topic} {verb} {place}")
        other = _PLACES[picks[i, 4] % len(_PLACES)]
        abstracts.append(
            f"{place}: what the {adj} {topic} means for readers from {other} and beyond." if has_abstract[i] else None
        )
    return titles, abstracts


def make_users(seed: int, n_users: int) -> Population:
    """The user population of one seed, with its post-drift state (used only when drift is asked)."""
    rng = _rng(seed, _STREAM_USERS)
    n_cat = len(CATEGORIES)
    preference = rng.dirichlet(DIRICHLET_TOTAL * CATEGORY_SHARES, size=n_users)
    # lognormal with mean MEAN_SESSIONS_PER_DAY: exp(mu + sigma^2/2) = mean
    mu = np.log(MEAN_SESSIONS_PER_DAY) - ACTIVITY_SIGMA**2 / 2
    activity = rng.lognormal(mu, ACTIVITY_SIGMA, n_users)
    taste = rng.normal(0.0, TASTE_SCALE, (n_users, TASTE_DIM))
    policy_view = _policy_view(preference)

    drift_rng = _rng(seed, _STREAM_DRIFT)
    trending = trending_categories(seed)
    drifted = drift_rng.random(n_users) < DRIFT_USER_SHARE
    alpha = np.full(n_cat, 0.05)
    alpha[trending] = 1.0
    new_pref = drift_rng.dirichlet(alpha, size=n_users)
    drifted_preference = np.where(drifted[:, None], DRIFT_KEEP * preference + (1 - DRIFT_KEEP) * new_pref, preference)
    # The story brings drifted users back more often (a few come less).
    factor = drift_rng.lognormal(DRIFT_ACTIVITY_LOG_MEAN, 0.5, n_users)
    drifted_activity = np.where(drifted, activity * factor, activity)
    seen = (1 - DRIFT_POLICY_CATCH_UP) * preference + DRIFT_POLICY_CATCH_UP * drifted_preference
    return Population(
        preference=preference,
        drifted_preference=drifted_preference,
        drifted=drifted,
        activity=activity,
        drifted_activity=drifted_activity,
        taste=taste,
        policy_view=policy_view,
        drifted_policy_view=_policy_view(seen),
        trending=trending,
    )


def _policy_view(preference: np.ndarray) -> np.ndarray:
    # The site's model of a user: smoothed towards uniform so every category keeps some exposure.
    return (0.5 * preference + 0.5 / preference.shape[1]) ** POLICY_PERSONALISATION


def _article_table(cat: Catalogue, start: dt.date) -> pa.Table:
    n = len(cat.published_s)
    epoch_us = _epoch_us(start)
    return pa.Table.from_arrays(
        [
            _names("a", np.arange(n)),
            pa.array(epoch_us + np.round(cat.published_s * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
            pa.array(np.asarray(CATEGORIES, dtype=object)[cat.category], pa.string()),
            pa.array(cat.titles, pa.string()),
            pa.array(cat.abstracts, pa.string()),
        ],
        schema=ARTICLE_SCHEMA,
    )


def _derived_articles(first_seen: np.ndarray, epoch_us: int) -> pa.Table:
    """The article rows an import derives from a click log: one per article with an event,
    ``published_at`` = its first event (``first_seen``: (n_articles,) seconds, inf if none)."""
    index = np.flatnonzero(np.isfinite(first_seen))
    ids = _names("a", index)
    return pa.Table.from_arrays(
        [
            ids,
            pa.array(epoch_us + np.round(first_seen[index] * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
            pa.array([UNKNOWN_CATEGORY] * len(index), pa.string()),
            ids,
            pa.nulls(len(index), pa.string()),
        ],
        schema=ARTICLE_SCHEMA,
    )


def _epoch_us(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1_000_000


def _names(prefix: str, index: np.ndarray) -> pa.Array:
    """``prefix`` + zero-padded 6-digit index, e.g. ``u000042``."""
    digits = pc.utf8_lpad(pc.cast(pa.array(index, pa.int64()), pa.string()), width=6, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


@dataclass
class _Events:
    """One batch of events as numpy columns, all of shape ``(n,)``."""

    gen_day: np.ndarray  # 1-based day index whose traffic produced the event (part of event_id)
    seq: np.ndarray  # running number within that day (part of event_id)
    t: np.ndarray  # seconds since midnight UTC of day 1
    user: np.ndarray
    article: np.ndarray
    etype: np.ndarray  # index into EVENT_TYPE_NAMES
    dwell_ms: np.ndarray  # -1 where null
    slate: np.ndarray  # running slate number within gen_day (part of request_id)
    position: np.ndarray
    propensity: np.ndarray

    def take(self, index: np.ndarray) -> _Events:
        return _Events(*(getattr(self, f)[index] for f in _EVENT_FIELDS))

    @staticmethod
    def concat(parts: list[_Events]) -> _Events:
        return _Events(*(np.concatenate([getattr(p, f) for p in parts]) for f in _EVENT_FIELDS))

    def __len__(self) -> int:
        return len(self.t)


_EVENT_FIELDS = tuple(_Events.__dataclass_fields__)


def _simulate_day(day: int, seed: int, cat: Catalogue, pop: Population, drifted: bool, weekday: int) -> _Events:
    """All events caused by sessions starting on ``day`` (0-based); ``t`` may run past midnight."""
    rng = _rng(seed, _STREAM_DAY, day)
    n_users = len(pop.activity)
    activity = pop.drifted_activity if drifted else pop.activity
    preference = pop.drifted_preference if drifted else pop.preference
    policy_view = pop.drifted_policy_view if drifted else pop.policy_view
    rate = activity * (WEEKEND_FACTOR if weekday >= 5 else 1.0)

    # Sessions: per-user Poisson counts at diurnal start times.
    n_sess = rng.poisson(rate)
    sess_user = np.repeat(np.arange(n_users, dtype=np.int32), n_sess)
    n_s = len(sess_user)
    hour = rng.choice(24, size=n_s, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    sess_start = day * DAY_S + hour * 3600.0 + rng.uniform(0.0, 3600.0, n_s)

    # Slates: 1 + Poisson per session, each some tens of seconds after the previous one.
    n_slates_per = 1 + rng.poisson(EXTRA_SLATES_MEAN, n_s)
    slate_sess = np.repeat(np.arange(n_s), n_slates_per)
    gaps = rng.exponential(45.0, len(slate_sess))
    first = np.concatenate([[0], np.cumsum(n_slates_per)[:-1]])
    csum = np.cumsum(gaps)
    # time since session start = cumulative gaps within the session, 0 for its first slate
    within = csum - np.repeat(csum[first], n_slates_per)
    slate_t = sess_start[slate_sess] + within
    slate_user = sess_user[slate_sess]
    order = np.argsort(slate_t, kind="stable")
    slate_t, slate_user = slate_t[order], slate_user[order]
    n_slates = len(slate_t)
    if n_slates == 0:
        return _empty_events()

    # Candidate window: a contiguous range of the publication-sorted catalogue.
    pub = cat.published_s
    lo = int(np.searchsorted(pub, day * DAY_S - MAX_AGE_S))
    lo = max(0, min(lo, int(np.searchsorted(pub, day * DAY_S)) - SLATE_SIZE))
    # Slates of a session that runs past midnight are served from the catalogue as of midnight, so a
    # day's traffic never depends on what is published the next day (drift starts cleanly at a day).
    seen_t = np.minimum(slate_t, (day + 1) * DAY_S)
    hi = int(np.searchsorted(pub, seen_t[-1], side="right"))
    cand = np.arange(lo, hi)
    # Policy base weight: exp(prior + recency). The recency term exp(-(t - pub)/R) factors into a
    # per-slate constant (irrelevant to a softmax) times exp(pub/R), taken relative to this day.
    base = np.exp(cat.policy_prior[cand] + (pub[cand] - day * DAY_S) / POLICY_RECENCY_S)
    cand_cat = cat.category[cand]
    n_published = np.searchsorted(pub, seen_t, side="right")  # (n_slates,) articles out at t

    chunk = max(64, 4_000_000 // max(1, len(cand)))
    pieces = []
    for s0 in range(0, n_slates, chunk):
        sl = slice(s0, min(n_slates, s0 + chunk))
        pieces.append(
            _rank_and_click(
                rng,
                cat,
                pop,
                preference,
                policy_view,
                cand,
                base,
                cand_cat,
                slate_t[sl],
                slate_user[sl],
                n_published[sl],
                s0,
            )
        )
    ev = _Events.concat(pieces)
    ev.gen_day[:] = day + 1
    ev.seq[:] = np.arange(len(ev))
    return ev


def _rank_and_click(
    rng: np.random.Generator,
    cat: Catalogue,
    pop: Population,
    preference: np.ndarray,
    policy_view: np.ndarray,
    cand: np.ndarray,
    base: np.ndarray,
    cand_cat: np.ndarray,
    t: np.ndarray,
    user: np.ndarray,
    n_published: np.ndarray,
    slate0: int,
) -> _Events:
    """Rank slates with the logging policy, then sample clicks and reads, for ``(B,)`` slates."""
    b, c = len(t), len(cand)
    pub = cat.published_s[cand]
    # Eligible: already published, and not older than MAX_AGE_S unless among the SLATE_SIZE newest.
    out = cand[None, :] < n_published[:, None]
    fresh = pub[None, :] >= (t[:, None] - MAX_AGE_S)
    newest = cand[None, :] >= (n_published[:, None] - SLATE_SIZE)
    valid = out & (fresh | newest)
    n_valid = valid.sum(axis=1)

    # Logging policy: Plackett-Luce over p = (1-eps) * softmax(score) + eps * uniform(valid).
    w = base[None, :] * policy_view[user][:, cand_cat]
    w = np.where(valid, w, 0.0)
    p = (1 - POLICY_EXPLORATION) * w / w.sum(axis=1, keepdims=True)
    p += np.where(valid, POLICY_EXPLORATION / np.maximum(n_valid, 1)[:, None], 0.0)
    # Gumbel-top-k in its exponential form: sorting E/p ascending (E ~ Exp(1)) samples a PL ranking.
    with np.errstate(divide="ignore"):
        keys = rng.standard_exponential((b, c)) / p
    k = min(SLATE_SIZE, c)
    top = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < c else np.broadcast_to(np.arange(c), (b, c)).copy()
    top = np.take_along_axis(top, np.argsort(np.take_along_axis(keys, top, axis=1), axis=1), axis=1)
    shown = np.arange(k)[None, :] < n_valid[:, None]  # (B, K) slot holds an eligible article
    p_sel = np.take_along_axis(p, top, axis=1)
    # Propensity of slot j = p_j / (1 - sum of p over the slots above): the PL choice probability.
    remaining = 1.0 - np.concatenate([np.zeros((b, 1)), np.cumsum(p_sel, axis=1)[:, :-1]], axis=1)
    propensity = np.minimum(1.0, p_sel / np.maximum(remaining, p_sel))

    art = cand[top]  # (B, K) global article index
    u = np.broadcast_to(user[:, None], art.shape)
    age = t[:, None] - cat.published_s[art]
    n_cat = preference.shape[1]
    affinity = (
        CLICK_BASE_LOGIT
        + CLICK_CATEGORY_WEIGHT * np.log(n_cat * preference[u, cat.category[art]] + 0.1)
        + cat.quality[art]
        + np.einsum("bkd,bkd->bk", pop.taste[u], cat.taste[art])
    )
    relevance = 1.0 / (1.0 + np.exp(-affinity))  # (B, K) interest in a fresh article, in (0, 1)
    freshness = np.exp2(-age / cat.half_life_s[art])
    bias = position_bias(np.arange(k))
    click = shown & (rng.random((b, k)) < bias[None, :] * relevance * freshness)
    read = click & (rng.random((b, k)) < READ_BASE + READ_SLOPE * relevance)

    slate = np.broadcast_to(np.arange(slate0, slate0 + b)[:, None], art.shape)
    pos = np.broadcast_to(np.arange(k, dtype=np.int32)[None, :], art.shape)
    t_imp = np.broadcast_to(t[:, None], art.shape)
    # Clicks follow the impression by a few seconds, more for lower slots (scrolling).
    t_click = t_imp + 2.0 + 1.5 * pos + rng.exponential(8.0, (b, k))
    # Dwell: lognormal, median ~20 s for a lukewarm reader up to ~90 s for a keen one, clipped to [1 s, 30 min].
    dwell_s = np.clip(rng.lognormal(np.log(20.0) + 1.5 * relevance, 0.8), 1.0, 1800.0)
    # The read event is logged when the reader leaves the article.
    t_read = t_click + dwell_s

    parts = []
    for mask, tt, etype in ((shown, t_imp, 0), (click, t_click, 1), (read, t_read, 2)):
        n = int(mask.sum())
        dwell = np.round(dwell_s[mask] * 1000).astype(np.int64) if etype == 2 else np.full(n, -1, np.int64)
        parts.append(
            _Events(
                gen_day=np.zeros(n, np.int32),
                seq=np.zeros(n, np.int64),
                t=tt[mask],
                user=u[mask].astype(np.int32),
                article=art[mask].astype(np.int32),
                etype=np.full(n, etype, np.int8),
                dwell_ms=dwell,
                slate=slate[mask].astype(np.int64),
                position=pos[mask],
                propensity=propensity[mask],
            )
        )
    return _Events.concat(parts)


def position_bias(position: np.ndarray) -> np.ndarray:
    """The click model's examination probability of a 0-based slot: 1 / log2(position + 2)."""
    return 1.0 / np.log2(np.asarray(position, dtype=np.float64) + 2.0)


def _empty_events() -> _Events:
    dtypes = (np.int32, np.int64, np.float64, np.int32, np.int32, np.int8, np.int64, np.int64, np.int32, np.float64)
    return _Events(*(np.zeros(0, d) for d in dtypes))


def _event_table(ev: _Events, seed: int, epoch_us: int) -> pa.Table:
    """The bronze rows of ``ev``, exactly ``EVENT_SCHEMA``. Events without a slate (``slate`` < 0:
    a click log, no recommender in the loop) have null request, position, propensity, model and variant."""
    n = len(ev)
    gen_day = pc.cast(pa.array(ev.gen_day), pa.string())
    event_id = pc.binary_join_element_wise(f"g{seed}-", gen_day, "-", pc.cast(pa.array(ev.seq), pa.string()), "")
    no_slate = pa.array(ev.slate < 0)
    request_id = pc.if_else(
        no_slate,
        pa.scalar(None, pa.string()),
        pc.binary_join_element_wise(f"r{seed}-", gen_day, "-", pc.cast(pa.array(ev.slate), pa.string()), ""),
    )
    ts_us = epoch_us + np.round(ev.t * 1e6).astype(np.int64)

    def constant(value: str) -> pa.Array:
        column = pa.array(np.full(n, value, dtype=object), pa.string()) if n else pa.array([], pa.string())
        return pc.if_else(no_slate, pa.scalar(None, pa.string()), column)

    return pa.Table.from_arrays(
        [
            event_id,
            pa.array(ts_us, pa.timestamp("us", tz="UTC")),
            _names("u", ev.user),
            _names("a", ev.article),
            pa.array(EVENT_TYPE_NAMES, pa.string()).take(pa.array(ev.etype.astype(np.int32))),
            pa.array(ev.dwell_ms, pa.int64(), mask=ev.dwell_ms < 0),
            request_id,
            pa.array(ev.position, pa.int32(), mask=ev.slate < 0),
            constant(MODEL_VERSION),
            constant(VARIANT),
            pa.array(ev.propensity, pa.float64(), mask=ev.slate < 0),
        ],
        schema=EVENT_SCHEMA,
    )


def _remove_generated(folder: Path, prefix: str = "generated-") -> None:
    if folder.is_dir():
        for old in folder.glob(f"{prefix}*.parquet"):
            old.unlink()


def generate(
    settings: Settings,
    *,
    users: int,
    articles: int,
    days: int,
    seed: int,
    end: dt.date | None = None,
    drift_day: int | None = None,
    catalog: Catalog = "news",
    write_articles: bool = True,
) -> GenerateReport:
    """Write ``days`` days of synthetic traffic ending at ``end`` (default today, UTC) to the bronze lake.

    ``catalog``: ``"news"`` (this module: hours-long article lives, a logging policy's slates with
    impressions) or ``"evergreen"`` (``reco.evergreen``: items that live for months, clicks and reads
    only, no drift). ``write_articles=False`` writes no article metadata: the articles are derived
    from the log as ``reco data import-events`` derives them for a click log without an article file
    (``derived-generated-<seed>.parquet``: ``published_at`` = first event, category ``unknown``,
    title = id).

    Articles go to ``bronze/articles/generated-<seed>.parquet`` (``ARTICLE_SCHEMA``, ids ``a000123`` in
    publication order); events to ``bronze/events/date=D/generated-<uuid>.parquet`` (``EVENT_SCHEMA``,
    one file per day), partitioned by *arrival* day: ``ts`` is the true UTC event time, which for late
    events is the day before the partition's date. Sessions running past the last midnight are cut there.

    Re-running is idempotent for the same arguments: before writing, every ``generated-*.parquet`` file
    in the event partitions of the period is removed, and every ``generated-*.parquet`` article file
    too (article ids are reused across seeds, so two generated catalogues cannot coexist). Other files
    (service or imported batches) are left alone, and so are generated files in partitions outside the
    period.

    Event fields: ``event_id`` = ``g<seed>-<day>-<n>`` (``day`` 1-based), unique; every event of one
    slate shares ``request_id`` = ``r<seed>-<day>-<slate>``, and clicks and reads carry the ``position``
    and ``propensity`` of the impression they come from; ``dwell_ms`` is set on reads only;
    ``model_version`` = ``"logging-policy"``, ``variant`` = ``"stable"``.

    ``propensity`` at ``position`` k is the Plackett-Luce choice probability of the logging policy:
    the probability that, having filled slots 0..k-1 as shown, the policy picked this article for slot
    k, i.e. ``p_i / (1 - sum of p over the articles in slots 0..k-1)`` where ``p`` is the policy's
    distribution over eligible articles at request time (softmax of popularity + recency + the site's
    smoothed view of the user's categories, mixed with 10% uniform exploration). It lies in (0, 1]. At position 0 it is
    the marginal probability of showing the article first; the probability of the whole prefix 0..k
    shown as logged is the product of the propensities of positions 0..k of the request (cascade IPS).

    ``drift_day`` K (1-based, 1 <= K <= days): from day K on, ~70% of users move most of their
    preference to two trending (small) categories and change activity (on average more sessions), 30%
    of the articles published from day K are about those categories, and the logging policy follows the
    users halfway; the days before K (events and articles) are row for row the same as without drift.
    Raises ``RecoError`` on impossible sizes, an unknown catalogue or a drift asked of an evergreen one.
    """
    started = time.perf_counter()
    if catalog not in CATALOGS:
        raise RecoError(f"--catalog must be one of {', '.join(CATALOGS)} (got {catalog!r})")
    if catalog == "evergreen" and drift_day is not None:
        raise RecoError("--drift-day is for the news catalogue: evergreen tastes are stable")
    if users < 1 or days < 1:
        raise RecoError(f"need at least one user and one day (got users={users}, days={days})")
    if articles < 3 * SLATE_SIZE:
        raise RecoError(f"need at least {3 * SLATE_SIZE} articles to fill slates of {SLATE_SIZE} (got {articles})")
    if drift_day is not None and not 1 <= drift_day <= days:
        raise RecoError(f"--drift-day must be between 1 and --days ({days}), got {drift_day}")
    end = end or dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=days - 1)
    epoch_us = _epoch_us(start)

    if catalog == "evergreen":
        from reco import evergreen

        cat = evergreen.make_items(seed, articles, days)
        pop = evergreen.make_people(seed, users)
        read_log = evergreen.ReadLog(articles)
    else:
        cat = make_articles(seed, articles, days, drift_day)
        pop = make_users(seed, users)
    write_manifest(
        settings,
        seed=seed,
        users=users,
        articles=articles,
        days=days,
        start=start,
        drift_day=drift_day,
        catalog=catalog,
    )

    _remove_generated(settings.bronze_articles_dir)
    _remove_generated(settings.bronze_articles_dir, f"{DERIVED_PREFIX}generated-")
    if write_articles:
        write_atomic(_article_table(cat, start), settings.bronze_articles_dir / f"generated-{seed}.parquet")
    first_seen = np.full(articles, np.inf)  # (n_articles,) first event time, for derived articles
    for d in range(days):
        _remove_generated(partition_dir(settings.bronze_events_dir, start + dt.timedelta(days=d)))

    counts = dict.fromkeys(("events", "impression", "click", "read", "duplicates", "late"), 0)
    carry: dict[int, list[_Events]] = {}  # arrival day -> events generated earlier that land there
    for d in range(days):
        day = start + dt.timedelta(days=d)
        drifted = drift_day is not None and d + 1 >= drift_day
        if catalog == "evergreen":
            ev = evergreen.simulate_day(d, seed, cat, pop, day.weekday(), read_log)
        else:
            ev = _simulate_day(d, seed, cat, pop, drifted, day.weekday())
        noise = _rng(seed, _STREAM_NOISE, d)
        # Arrival day: the ts day, one later for a late share; nothing arrives after the last day
        # (the log is cut at the last midnight, and the last day's arrivals are all on time).
        arrival = np.floor(ev.t / DAY_S).astype(np.int64)
        late = noise.random(len(ev)) < LATE_SHARE
        arrival = np.where(late & (arrival + 1 < days), arrival + 1, arrival)
        keep = arrival < days
        ev, arrival = ev.take(keep), arrival[keep]
        for a in np.unique(arrival[arrival > d]):
            carry.setdefault(int(a), []).append(ev.take(arrival == a))
        own = ev.take(arrival == d)
        earlier = carry.pop(d, [])
        n_late = sum(int(np.sum(np.floor(e.t / DAY_S) < d)) for e in earlier)
        # The partition in ts order: late arrivals (yesterday's ts) first, then spill-over from sessions
        # that crossed midnight mixed with today's own events.
        batch = _Events.concat([*earlier, own]) if earlier else own
        batch = batch.take(np.argsort(batch.t, kind="stable"))
        # At-least-once delivery: a small share of rows is written a second time, same event_id.
        dup = np.flatnonzero(noise.random(len(batch)) < DUPLICATE_SHARE)
        if len(dup):
            batch = _Events.concat([batch, batch.take(dup)])
        if len(batch):
            append_batch(_event_table(batch, seed, epoch_us), settings.bronze_events_dir, day, prefix="generated")
        np.minimum.at(first_seen, batch.article, batch.t)
        counts["events"] += len(batch)
        counts["duplicates"] += len(dup)
        counts["late"] += n_late
        for i, name in enumerate(EVENT_TYPE_NAMES):
            counts[name] += int(np.sum(batch.etype == i)) - int(np.sum(batch.etype[len(batch) - len(dup) :] == i))
    derived = 0
    if not write_articles:
        table = _derived_articles(first_seen, epoch_us)
        write_atomic(table, settings.bronze_articles_dir / f"{DERIVED_PREFIX}generated-{seed}.parquet")
        derived = table.num_rows

    return GenerateReport(
        events=counts["events"],
        impressions=counts["impression"],
        clicks=counts["click"],
        reads=counts["read"],
        users=users,
        articles=articles,
        days=days,
        start=start.isoformat(),
        end=end.isoformat(),
        duplicates=counts["duplicates"],
        late=counts["late"],
        seconds=round(time.perf_counter() - started, 3),
        catalog=catalog,
        articles_derived=derived,
    )
