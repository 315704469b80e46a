"""Synthetic traffic of a catalogue that lives for months: a blog or an editorial shop.

What it models, next to the news world of ``reco.generate`` (same ids, schemas, log noise and
deterministic streams keyed by ``(seed, purpose[, day])``):

* **Items** published over the ``HISTORY_DAYS`` before the window (a share also during it), each with
  a category, a latent taste vector, a **heavy-tailed appeal** (lognormal: a few items draw most
  clicks) and a slow interest decay (half-life of weeks to months), so an item is clicked for weeks.
* **Users** with **stable tastes**: concentrated category preferences (a few dominant affinities), a
  latent taste vector, heavy-tailed activity. No drift.
* **Sessions** at diurnal hours; each picks one or more items the user has **never read before** (an
  item is read at most once per user) with probability softmax(category preference + taste match +
  log appeal - decay by age) over the items published by then. There is no recommender in the loop:
  the log holds **clicks and reads only, no impressions** (``request_id``, ``position``,
  ``propensity``, ``model_version`` and ``variant`` are null), as a site's own click log does.
"""

from __future__ import annotations

import numpy as np

from reco.generate import (
    CATEGORIES,
    CATEGORY_SHARES,
    DAY_S,
    HOUR_WEIGHTS,
    WEEKEND_FACTOR,
    Catalogue,
    Population,
    _Events,
    _rng,
    _titles,
)

# The knobs of the simulation, gathered so their effect can be read in one place.
HISTORY_DAYS = 180  # items are published over this many days before day 1 ...
NEW_SHARE = 0.08  # ... except this share, published during the window (the site keeps publishing)
HALF_LIFE_MEDIAN_DAYS = 60.0  # median interest half-life of an item (lognormal, clipped to [14, 365] days)
APPEAL_SIGMA = 1.1  # lognormal sigma of item appeal: heavy-tailed, the top 1 % of items are ~10x the median
DIRICHLET_TOTAL = 1.2  # small => a few dominant categories per user
CATEGORY_WEIGHT = 1.6  # logit per unit of log(n_categories * preference)
TASTE_DIM = 6
TASTE_SCALE = 0.6  # taste match std ~0.9 logit: who likes what within a category (what only CF learns)
MEAN_SESSIONS_PER_DAY = 0.35
ACTIVITY_SIGMA = 1.0
EXTRA_CLICKS_MEAN = 0.8  # items per session = 1 + Poisson(this)
READ_SHARE = 0.6  # P(read | click)
# Stream purposes, apart from the news world's (1..6).
_STREAM_ITEMS, _STREAM_USERS, _STREAM_DAY = 21, 22, 23


def make_items(seed: int, n_items: int, days: int) -> Catalogue:
    """The catalogue: ``n_items`` sorted by publication time (``published_s`` < 0 before day 1)."""
    rng = _rng(seed, _STREAM_ITEMS)
    n_new = min(n_items - 1, round(NEW_SHARE * n_items)) if n_items > 1 else 0
    published = np.sort(
        np.concatenate(
            [rng.uniform(-HISTORY_DAYS * DAY_S, 0.0, n_items - n_new), rng.uniform(0.0, days * DAY_S, n_new)]
        )
    )
    category = rng.choice(len(CATEGORIES), size=n_items, p=CATEGORY_SHARES)
    log_appeal = rng.normal(0.0, APPEAL_SIGMA, n_items)
    half_life = np.clip(rng.lognormal(np.log(HALF_LIFE_MEDIAN_DAYS), 0.6, n_items), 14.0, 365.0) * DAY_S
    taste = rng.normal(0.0, TASTE_SCALE, (n_items, TASTE_DIM))
    picks = rng.integers(0, 1 << 30, (n_items, 5))
    has_abstract = rng.random(n_items) < 0.85
    titles, abstracts = _titles(category, picks, has_abstract)
    return Catalogue(published, category, log_appeal, log_appeal, half_life, taste, titles, abstracts)


def make_people(seed: int, n_users: int) -> Population:
    """Users with stable preferences (the drifted fields equal the others: no drift here)."""
    rng = _rng(seed, _STREAM_USERS)
    preference = rng.dirichlet(DIRICHLET_TOTAL * CATEGORY_SHARES, size=n_users)
    mu = np.log(MEAN_SESSIONS_PER_DAY) - ACTIVITY_SIGMA**2 / 2
    activity = rng.lognormal(mu, ACTIVITY_SIGMA, n_users)
    taste = rng.normal(0.0, TASTE_SCALE, (n_users, TASTE_DIM))
    return Population(
        preference=preference,
        drifted_preference=preference,
        drifted=np.zeros(n_users, dtype=bool),
        activity=activity,
        drifted_activity=activity,
        taste=taste,
        policy_view=preference,
        drifted_policy_view=preference,
        trending=np.empty(0, dtype=np.int64),
    )


class ReadLog:
    """Which (user, item) pairs were read so far: sorted unique codes ``user * n_items + item``."""

    def __init__(self, n_items: int):
        self.n_items = n_items
        self.codes = np.empty(0, dtype=np.int64)

    def pairs(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) of every item already read by ``users[row]`` (users distinct)."""
        lo = np.searchsorted(self.codes, users.astype(np.int64) * self.n_items)
        hi = np.searchsorted(self.codes, (users.astype(np.int64) + 1) * self.n_items)
        counts = hi - lo
        rows = np.repeat(np.arange(len(users)), counts)
        starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        index = starts + np.arange(int(counts.sum()))
        return rows, self.codes[index] % self.n_items

    def add(self, users: np.ndarray, items: np.ndarray) -> None:
        self.codes = np.union1d(self.codes, users.astype(np.int64) * self.n_items + items)


def simulate_day(day: int, seed: int, cat: Catalogue, pop: Population, weekday: int, read: ReadLog) -> _Events:
    """Clicks and reads of the sessions starting on ``day`` (0-based); records the reads in ``read``.

    A user's sessions of the day are played in order (round r = everybody's r-th session), so an
    item read in the morning is not picked again in the evening."""
    rng = _rng(seed, _STREAM_DAY, day)
    n_users, n_items = len(pop.activity), len(cat.published_s)
    n_sess = rng.poisson(pop.activity * (WEEKEND_FACTOR if weekday >= 5 else 1.0))
    user = np.repeat(np.arange(n_users, dtype=np.int32), n_sess)
    n_s = len(user)
    hour = rng.choice(24, size=n_s, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    start = day * DAY_S + hour * 3600.0 + rng.uniform(0.0, 3600.0, n_s)
    n_clicks = 1 + rng.poisson(EXTRA_CLICKS_MEAN, n_s)
    # The r-th session of its user today, by start time.
    order = np.lexsort((start, user))
    first_of_user = np.concatenate([[0], np.flatnonzero(np.diff(user[order])) + 1]) if n_s else np.empty(0, int)
    rank = np.empty(n_s, dtype=np.int64)
    rank[order] = np.arange(n_s) - np.repeat(first_of_user, np.diff(np.append(first_of_user, n_s)))

    n_cat = len(CATEGORIES)
    # (n_users, n_categories) preference logit; item constants: appeal and the decay rate per second.
    pref_logit = CATEGORY_WEIGHT * np.log(n_cat * pop.preference + 0.05)
    decay_rate = np.log(2.0) / cat.half_life_s
    pieces: list[_Events] = []
    for r in range(int(rank.max()) + 1 if n_s else 0):
        rows_r = np.flatnonzero(rank == r)
        chunk = max(16, 2_000_000 // max(1, n_items))
        for c0 in range(0, len(rows_r), chunk):
            s = rows_r[c0 : c0 + chunk]
            pieces.append(_pick(rng, cat, pop, pref_logit, decay_rate, read, user[s], start[s], n_clicks[s]))
    if not pieces:
        return _Events(*(np.zeros(0, d) for d in _DTYPES))
    ev = _Events.concat(pieces)
    ev = ev.take(np.argsort(ev.t, kind="stable"))
    ev.gen_day[:] = day + 1
    ev.seq[:] = np.arange(len(ev))
    return ev


_DTYPES = (np.int32, np.int64, np.float64, np.int32, np.int32, np.int8, np.int64, np.int64, np.int32, np.float64)


def _pick(
    rng: np.random.Generator,
    cat: Catalogue,
    pop: Population,
    pref_logit: np.ndarray,
    decay_rate: np.ndarray,
    read: ReadLog,
    user: np.ndarray,
    start: np.ndarray,
    n_clicks: np.ndarray,
) -> _Events:
    """The items picked in ``(B,)`` sessions of distinct users, as click (and read) events."""
    pub = cat.published_s
    age = start[:, None] - pub[None, :]
    logit = (
        pref_logit[user][:, cat.category]
        + pop.taste[user] @ cat.taste.T
        + cat.quality[None, :]
        - decay_rate[None, :] * np.maximum(age, 0.0)
    )
    # Gumbel-top-k: the m highest of logit + Gumbel noise are m draws without replacement.
    keys = logit + rng.gumbel(size=logit.shape)
    keys[age < 0] = -np.inf  # not published yet
    rows, items = read.pairs(user)
    keys[rows, items] = -np.inf  # read before: never again
    m = int(n_clicks.max())
    top = np.argpartition(-keys, m - 1, axis=1)[:, :m] if m < keys.shape[1] else np.argsort(-keys, axis=1)[:, :m]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1), axis=1)
    take = (np.arange(top.shape[1])[None, :] < n_clicks[:, None]) & np.isfinite(np.take_along_axis(keys, top, axis=1))
    sess, slot = np.nonzero(take)
    item = top[sess, slot]
    read.add(user[sess], item)

    # One item after the other: a click, and for READ_SHARE of them a read when the reader leaves.
    dwell_s = np.clip(rng.lognormal(np.log(60.0), 0.9, len(item)), 2.0, 1800.0)
    browse_s = rng.exponential(40.0, len(item))
    step = browse_s + dwell_s
    csum = np.cumsum(step)
    first = np.concatenate([[0], np.flatnonzero(np.diff(sess)) + 1]) if len(sess) else np.empty(0, int)
    before = np.repeat(csum[first] - step[first], np.diff(np.append(first, len(sess))))
    t_click = start[sess] + (csum - step - before) + browse_s
    is_read = rng.random(len(item)) < READ_SHARE
    n_c, n_r = len(item), int(is_read.sum())
    n = n_c + n_r
    return _Events(
        gen_day=np.zeros(n, np.int32),
        seq=np.zeros(n, np.int64),
        t=np.concatenate([t_click, t_click[is_read] + dwell_s[is_read]]),
        user=np.concatenate([user[sess], user[sess][is_read]]).astype(np.int32),
        article=np.concatenate([item, item[is_read]]).astype(np.int32),
        etype=np.concatenate([np.full(n_c, 1, np.int8), np.full(n_r, 2, np.int8)]),
        dwell_ms=np.concatenate([np.full(n_c, -1, np.int64), np.round(dwell_s[is_read] * 1000).astype(np.int64)]),
        slate=np.full(n, -1, np.int64),  # no request: null request_id, position, propensity
        position=np.full(n, -1, np.int32),
        propensity=np.full(n, np.nan),
    )
