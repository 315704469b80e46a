"""The model's time windows, learned from the training log: how old an article may be and still be
clicked, how fast interest in it fades, and what counts as fresh.

A news site's clicks fall within hours to days of publication, a blog's or an editorial shop's over
months; fixed windows suit one and starve the other. Learned from the age of the clicked article at
the moment of each click in the training window (reads when the log has no clicks):

* ``max_age_hours`` (eligibility): ``MARGIN`` x the age under which ``MAX_AGE_QUANTILE`` of clicks
  fall. The margin because the log only holds what the site showed: a window cut exactly at the
  log's tail would shrink a little on every retraining.
* ``fresh_max_age_hours`` (fresh / category-fresh candidates, the exploration pool): ``MARGIN`` x the
  age under which ``FRESH_QUANTILE`` of clicks fall.
* ``half_life_hours`` (freshness decay): with impressions, the half-life of the click-through rate by
  article age (a log-linear fit over age bins): clicks alone understate it on a site that shows new
  articles more (on the generated news world the median click age is ~8 h, the CTR half-life ~20 h).
  Without impressions, exposure is unknown and taken as even: the median click age, which is the
  half-life when interest decays exponentially and every age is shown alike.

Each is clipped to a floor and a cap (hours), and a setting (``RECO_WINDOW_*``) overrides it; the
record of the run says which values were learned, overridden or kept as defaults, and why.

Articles without metadata (category ``UNKNOWN_CATEGORY``, derived from a click log) are dated by their
first event in the log, so their click ages are cut by the log's own length. When most clicks are on
such articles and their ages reach ``CENSORED_SHARE`` of the log's span, the log cannot tell when
clicks stop: the windows are left open (the caps) rather than learned from the log's length; a news
log without metadata, whose clicks end within days of a first event, still learns its windows.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reco.model import RuleSettings, epoch_seconds
from reco.schemas import UNKNOWN_CATEGORY
from reco.settings import Settings

MAX_AGE_QUANTILE = 0.99
FRESH_QUANTILE = 0.95
MARGIN = 1.25
# Fewer clicks with a known publication time than this: the defaults are kept.
MIN_CLICKS = 100
# The CTR fit needs this many impressions and clicks, spread over at least MIN_BINS age bins.
MIN_IMPRESSIONS = 1_000
MIN_CTR_CLICKS = 100
CTR_BINS = 10
MIN_BINS = 3
MIN_BIN_CLICKS = 5
YEAR_H = 365.0 * 24.0
# Ages of derived articles reaching this share of the log's span are the log's length, not readers'.
CENSORED_SHARE = 0.8
# (floor, cap) in hours: a day's articles are always eligible, nothing older than a year is.
MAX_AGE_BOUNDS = (24.0, YEAR_H)
HALF_LIFE_BOUNDS = (6.0, YEAR_H)
FRESH_BOUNDS = (12.0, YEAR_H)  # and never above max_age_hours

# RuleSettings field -> the setting that overrides it.
OVERRIDES = {
    "max_age_hours": "window_max_age_hours",
    "half_life_hours": "window_half_life_hours",
    "fresh_max_age_hours": "window_fresh_hours",
}


@dataclass(frozen=True)
class Windows:
    """Learned (or overridden) windows in hours, with where each came from (``sources``) and the
    click-age quantiles they were read from (``click_age_hours``: n, q50, q95, q99)."""

    max_age_hours: float
    half_life_hours: float
    fresh_max_age_hours: float
    sources: dict[str, str] = field(default_factory=dict)
    click_age_hours: dict[str, float] = field(default_factory=dict)

    def rules(self, base: RuleSettings) -> RuleSettings:
        """``base`` with these windows."""
        return dataclasses.replace(
            base,
            max_age_hours=self.max_age_hours,
            half_life_hours=self.half_life_hours,
            fresh_max_age_hours=self.fresh_max_age_hours,
        )

    def tags(self) -> dict[str, str]:
        """MLflow tags: where each window came from."""
        return {f"windows.{name}": how for name, how in self.sources.items()}

    def summary(self) -> dict[str, Any]:
        """The run summary's ``train.windows``."""
        return {
            "max_age_hours": self.max_age_hours,
            "half_life_hours": self.half_life_hours,
            "fresh_max_age_hours": self.fresh_max_age_hours,
            "source": dict(self.sources),
            "click_age_hours": dict(self.click_age_hours),
        }


def _age_hours(rows: pd.DataFrame, published: pd.Series) -> np.ndarray:
    """(n,) hours from the publication of each row's article to the row's ``ts``; NaN where the
    article's publication time is unknown, 0 where negative (a clock ahead of the metadata)."""
    at = epoch_seconds(published.reindex(rows["article_id"]).to_numpy())
    ages = (epoch_seconds(rows["ts"].to_numpy()) - at) / 3600.0
    return np.where(np.isfinite(ages), np.maximum(ages, 0.0), np.nan)


def _published(articles: pd.DataFrame) -> pd.Series:
    return articles.drop_duplicates("article_id", keep="last").set_index("article_id")["published_at"]


def click_ages_hours(events: pd.DataFrame, articles: pd.DataFrame) -> np.ndarray:
    """(n,) age in hours of the clicked article at each click of ``events`` (reads when there is no
    click), for the articles whose publication time is known (``articles``: silver metadata)."""
    kind = events["event_type"].to_numpy()
    use = "click" if (kind == "click").any() else "read"
    ages = _age_hours(events.loc[kind == use], _published(articles))
    return ages[np.isfinite(ages)]


def ctr_half_life(events: pd.DataFrame, articles: pd.DataFrame) -> tuple[float, str] | None:
    """Half-life (hours) of the click-through rate by article age, from the impressions in ``events``
    and the clicks on the same days (inf when the CTR does not fall with age); None with too little data.

    Impressions are cut into ``CTR_BINS`` bins of equal count by age; log(CTR) of each bin with at
    least ``MIN_BIN_CLICKS`` clicks is fitted linearly on the bin's median age (weights: the bin's
    clicks), and half-life = ln 2 / -slope."""
    impressions = events[events["event_type"] == "impression"]
    if len(impressions) < MIN_IMPRESSIONS:
        return None
    days = set(pd.to_datetime(impressions["ts"], utc=True).dt.date)
    clicks = events[(events["event_type"] == "click") & pd.to_datetime(events["ts"], utc=True).dt.date.isin(days)]
    published = _published(articles)
    shown = _age_hours(impressions, published)
    clicked = _age_hours(clicks, published)
    shown, clicked = shown[np.isfinite(shown)], clicked[np.isfinite(clicked)]
    if len(clicked) < MIN_CTR_CLICKS or len(shown) < MIN_IMPRESSIONS:
        return None
    edges = np.unique(np.quantile(shown, np.linspace(0.0, 1.0, CTR_BINS + 1)))
    if len(edges) < MIN_BINS + 1:
        return None
    n_bins = len(edges) - 1
    shown_bin = np.clip(np.searchsorted(edges, shown, side="right") - 1, 0, n_bins - 1)
    clicked_bin = np.clip(np.searchsorted(edges, clicked, side="right") - 1, 0, n_bins - 1)
    n_shown = np.bincount(shown_bin, minlength=n_bins)
    n_clicked = np.bincount(clicked_bin, minlength=n_bins)
    middle = np.array([np.median(shown[shown_bin == b]) if n_shown[b] else np.nan for b in range(n_bins)])
    use = (n_clicked >= MIN_BIN_CLICKS) & (n_shown > 0) & np.isfinite(middle)
    if use.sum() < MIN_BINS:
        return None
    slope, _ = np.polyfit(middle[use], np.log(n_clicked[use] / n_shown[use]), 1, w=np.sqrt(n_clicked[use]))
    if not slope < 0:  # no decay over the ages shown: as long as the cap allows
        return math.inf, f"CTR by age over {int(n_shown.sum())} impressions: no decay"
    how = f"CTR by age over {int(n_shown.sum())} impressions (CTR {n_clicked.sum() / n_shown.sum():.3f})"
    return math.log(2.0) / -slope, f"{how} on {len(days)} day(s)"


def _clip(value: float, bounds: tuple[float, float]) -> tuple[float, str]:
    low, high = bounds
    if value < low:
        return low, f", raised to the floor {low:g} h"
    if value > high:
        return high, f", cut to the cap {high:g} h"
    return value, ""


def learn_windows(
    ages_hours: np.ndarray,
    *,
    ctr_half_life_hours: tuple[float, str] | None = None,
    defaults: RuleSettings | None = None,
    overrides: dict[str, float | None] | None = None,
    censored: str | None = None,
) -> Windows:
    """The windows for click ages ``ages_hours`` ((n,) hours), see the module docstring.

    ``ctr_half_life_hours``: (half-life, how) from ``ctr_half_life`` when the log has impressions.
    ``defaults``: kept when there are fewer than ``MIN_CLICKS`` ages. ``overrides``: RuleSettings
    field -> value (None: not overridden); an override wins over everything, floors and caps included.
    ``censored``: why the ages are cut by the log itself (``censored_by_log``): the windows are then open.
    """
    defaults = defaults or RuleSettings()
    overrides = overrides or {}
    ages = np.asarray(ages_hours, dtype=np.float64)
    ages = ages[np.isfinite(ages)]
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    quantiles: dict[str, float] = {"n": float(len(ages))}
    if len(ages):
        q50, q95, q99 = (float(q) for q in np.quantile(ages, [0.5, FRESH_QUANTILE, MAX_AGE_QUANTILE]))
        quantiles |= {"q50": round(q50, 2), "q95": round(q95, 2), "q99": round(q99, 2)}
    if censored is not None:
        caps = {"max_age_hours": MAX_AGE_BOUNDS[1], "half_life_hours": HALF_LIFE_BOUNDS[1]}
        caps["fresh_max_age_hours"] = FRESH_BOUNDS[1]
        for name, cap in caps.items():
            values[name] = cap
            sources[name] = f"open: {censored}"
    elif len(ages) >= MIN_CLICKS:
        value, clipped = _clip(math.ceil(MARGIN * q99), MAX_AGE_BOUNDS)
        values["max_age_hours"] = value
        sources["max_age_hours"] = f"learned: {MARGIN:g} x q{MAX_AGE_QUANTILE * 100:g} click age {q99:.1f} h{clipped}"
        value, clipped = _clip(math.ceil(MARGIN * q95), FRESH_BOUNDS)
        values["fresh_max_age_hours"] = value
        sources["fresh_max_age_hours"] = (
            f"learned: {MARGIN:g} x q{FRESH_QUANTILE * 100:g} click age {q95:.1f} h{clipped}"
        )
        if ctr_half_life_hours is not None:
            half_life, how = ctr_half_life_hours
        else:
            half_life, how = q50, "median click age (no impressions: exposure taken as even)"
        value, clipped = _clip(max(1.0, round(half_life)) if math.isfinite(half_life) else half_life, HALF_LIFE_BOUNDS)
        values["half_life_hours"] = value
        sources["half_life_hours"] = f"learned: {how}, {half_life:.1f} h{clipped}"
    else:
        for name in OVERRIDES:
            values[name] = float(getattr(defaults, name))
            sources[name] = f"default: {len(ages)} clicks with a known publication time, fewer than {MIN_CLICKS}"
    for name, override in overrides.items():
        if override is not None:
            values[name] = float(override)
            sources[name] = f"override: RECO_{OVERRIDES[name].upper()}={override:g}"
    if values["fresh_max_age_hours"] > values["max_age_hours"] and overrides.get("fresh_max_age_hours") is None:
        values["fresh_max_age_hours"] = values["max_age_hours"]
        sources["fresh_max_age_hours"] += ", cut to max_age_hours"
    return Windows(
        max_age_hours=float(values["max_age_hours"]),
        half_life_hours=float(values["half_life_hours"]),
        fresh_max_age_hours=float(values["fresh_max_age_hours"]),
        sources=sources,
        click_age_hours=quantiles,
    )


def censored_by_log(events: pd.DataFrame, articles: pd.DataFrame) -> str | None:
    """Why the click ages of ``events`` are cut by the log itself (see the module docstring), or None."""
    derived = set(articles.loc[articles["category"] == UNKNOWN_CATEGORY, "article_id"])
    if not derived:
        return None
    kind = events["event_type"].to_numpy()
    clicks = events.loc[kind == ("click" if (kind == "click").any() else "read")]
    on_derived = clicks["article_id"].isin(derived).to_numpy()
    if not on_derived.any() or on_derived.mean() < 0.5:
        return None
    ages = click_ages_hours(clicks.loc[on_derived], articles)
    published = articles.loc[articles["article_id"].isin(derived), "published_at"]
    span_h = (epoch_seconds(clicks["ts"].to_numpy()).max() - np.nanmin(epoch_seconds(published.to_numpy()))) / 3600.0
    if len(ages) == 0 or not span_h > 0:
        return None
    q99 = float(np.quantile(ages, MAX_AGE_QUANTILE))
    if q99 < CENSORED_SHARE * span_h:
        return None
    return (
        f"{on_derived.mean():.0%} of clicks are on articles dated by their first event in the log, and their "
        f"q{MAX_AGE_QUANTILE * 100:g} click age {q99:.0f} h reaches the log's span {span_h:.0f} h"
    )


def training_windows(
    settings: Settings, events: pd.DataFrame, articles: pd.DataFrame, defaults: RuleSettings, *, learn: bool = True
) -> Windows:
    """The windows of one training run: learned from ``events`` (the training window's silver events,
    impressions where read) and ``articles`` (silver metadata), the settings' overrides applied.
    ``learn=False`` keeps ``defaults``' windows (overrides still apply)."""
    overrides = {name: getattr(settings, setting) for name, setting in OVERRIDES.items()}
    if not learn:
        windows = learn_windows(np.empty(0), defaults=defaults, overrides=overrides)
        kept = "default: learning is off in the training config"
        return dataclasses.replace(
            windows, sources={k: kept if v.startswith("default") else v for k, v in windows.sources.items()}
        )
    return learn_windows(
        click_ages_hours(events, articles),
        ctr_half_life_hours=ctr_half_life(events, articles),
        defaults=defaults,
        overrides=overrides,
        censored=censored_by_log(events, articles),
    )
