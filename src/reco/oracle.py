"""The generator's ground truth as a recommender: the ceiling of an offline evaluation.

``reco data generate`` writes a manifest of its arguments next to the articles it generates
(``write_manifest``). Since the generator is deterministic for its arguments, ``load_oracle``
rebuilds the same articles and users from it (``reco.generate.make_articles`` / ``make_users``)
and ``GeneratorOracle.scores`` recomputes the probability that the generator's click model gives
a user clicking an article shown in the top slot at time t:

    P(click) = sigmoid(CLICK_BASE_LOGIT + CLICK_CATEGORY_WEIGHT · log(n_categories · preference + 0.1)
                       + quality + taste_user · taste_article) · 2^(-age / half_life)

(the position-bias factor is the same for every article in a slot, so it does not change the
order). Ranking the eligible articles by it is the best any recommender can do in expectation.

No oracle when the workdir holds no manifest, when the manifest describes another world (another
catalogue kind, another generator version) or when the evaluated catalogue is not the manifest's
(imported data, a later ``generate`` elsewhere): every article of the catalogue must be one of
the rebuilt articles with the same publication time (to the second) and category.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from reco.settings import Settings

if TYPE_CHECKING:
    from reco.model.articles import ArticleFeatures

log = logging.getLogger(__name__)

MANIFEST_NAME = "generated-manifest.json"
# Bumped when the click model below stops matching the generator's: an old manifest then gives no oracle.
CLICK_MODEL = "news-v1"
_ID = re.compile(r"^[au](\d{6,})$")
# The terms of the click model below (``GeneratorOracle.scores``); ``policy_prior`` is not one of them.
CLICK_MODEL_PARTS: tuple[str, ...] = ("preference", "quality", "taste", "half_life", "policy_prior")
FULL_CLICK_MODEL = frozenset({"preference", "quality", "taste", "half_life"})


def write_manifest(
    settings: Settings,
    *,
    seed: int,
    users: int,
    articles: int,
    days: int,
    start: dt.date,
    drift_day: int | None,
    catalog: str = "news",
) -> None:
    """Record ``reco.generate.generate``'s arguments (``start``: its first day, UTC) beside its articles."""
    manifest = {
        "generator": "reco.generate",
        "click_model": CLICK_MODEL,
        "catalog": catalog,
        "seed": seed,
        "users": users,
        "articles": articles,
        "days": days,
        "start": start.isoformat(),
        "drift_day": drift_day,
    }
    settings.bronze_articles_dir.mkdir(parents=True, exist_ok=True)
    (settings.bronze_articles_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(settings: Settings) -> dict[str, Any] | None:
    path = settings.bronze_articles_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def generator_indices(ids: Sequence[str] | np.ndarray, prefix: str, size: int) -> np.ndarray:
    """(n,) generator index of each id (``a000123`` -> 123), -1 when it is not one of ``size``."""
    out = np.full(len(ids), -1, dtype=np.int64)
    for i, name in enumerate(ids):
        m = _ID.match(str(name))
        if m and str(name)[0] == prefix and int(m.group(1)) < size:
            out[i] = int(m.group(1))
    return out


@dataclass
class GeneratorOracle:
    """The rebuilt world aligned to one catalogue: ``article`` (n_articles,) the generator index
    of each catalogue row; times in UTC seconds since the epoch."""

    world: Any  # reco.generate.Catalogue
    population: Any  # reco.generate.Population
    epoch_s: float  # midnight UTC of the generator's first day
    drift_day: int | None
    article: np.ndarray
    n_users: int

    def user_index(self, user_id: str) -> int:
        index = generator_indices([user_id], "u", self.n_users)[0]
        return int(index)

    def scores(
        self,
        user_id: str,
        rows: np.ndarray,
        now_s: float,
        *,
        parts: frozenset[str] = FULL_CLICK_MODEL,
        quality: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """(len(rows),) click probability of ``user_id`` for the catalogue ``rows`` at ``now_s``
        (top slot); None for a user the generator did not make.

        ``parts`` (``CLICK_MODEL_PARTS``) keeps only some terms of the click model, to see which of them a
        ranking needs (``reco.oracle_gap``): without ``"preference"``, ``"quality"`` or ``"taste"`` that
        logit term is 0; without ``"half_life"`` every article decays with the median half-life;
        ``"policy_prior"`` adds what the logging policy believes of the article's quality, shrunk to its
        expected quality (E[quality | prior]) — not a term of the click model, a term of what gets *shown*.
        ``quality`` (one value per generated article) replaces the latent quality, e.g. an estimate of it."""
        u = self.user_index(user_id)
        if u < 0:
            return None
        art = self.article[rows]
        users = np.full(art.shape, u, dtype=np.int64)
        return self.click_probability(users, art, np.full(art.shape, now_s), parts=parts, quality=quality)

    def click_probability(
        self,
        users: np.ndarray,
        articles: np.ndarray,
        at_s: np.ndarray,
        *,
        parts: frozenset[str] = FULL_CLICK_MODEL,
        quality: np.ndarray | None = None,
    ) -> np.ndarray:
        """The click model for arrays of generator user and article indices at UTC times ``at_s`` (all (n,)),
        top slot: ``scores`` for many users and times at once."""
        from reco.generate import CLICK_BASE_LOGIT, HALF_LIFE_MEDIAN_S, POLICY_PRIOR_NOISE_SD, QUALITY_SD

        unknown = set(parts) - set(CLICK_MODEL_PARTS)
        if unknown:
            raise ValueError(f"unknown click-model part(s) {sorted(unknown)}; known: {list(CLICK_MODEL_PARTS)}")
        cat = self.world
        t = np.asarray(at_s, dtype=np.float64) - self.epoch_s
        affinity = CLICK_BASE_LOGIT + self.user_terms(users, articles, t, parts)
        if "quality" in parts:
            affinity += (cat.quality if quality is None else quality)[articles]
        if "policy_prior" in parts:
            shrink = QUALITY_SD**2 / (QUALITY_SD**2 + POLICY_PRIOR_NOISE_SD**2)
            affinity += shrink * cat.policy_prior[articles]
        half_life = cat.half_life_s[articles] if "half_life" in parts else HALF_LIFE_MEDIAN_S
        relevance = 1.0 / (1.0 + np.exp(-affinity))
        return np.asarray(relevance * np.exp2(-(t - cat.published_s[articles]) / half_life))

    def user_terms(
        self, users: np.ndarray, articles: np.ndarray, t: np.ndarray, parts: frozenset[str] = FULL_CLICK_MODEL
    ) -> np.ndarray:
        """(n,) the logit terms that depend on the user: category preference (as of the generator day of
        ``t``, seconds since its epoch: drifted users move on the drift day) and taste match."""
        from reco.generate import CLICK_CATEGORY_WEIGHT, DAY_S

        pop, cat = self.population, self.world
        out = np.zeros(np.shape(articles), dtype=np.float64)
        if "preference" in parts:
            # The generator's day index of a session start decides whether the user has drifted yet.
            drifted = (
                np.zeros(np.shape(t), dtype=bool)
                if self.drift_day is None
                else np.floor(t / DAY_S) + 1 >= self.drift_day
            )
            category = cat.category[articles]
            share = np.where(
                drifted, pop.drifted_preference[users, category], pop.preference[users, category]
            )
            out += CLICK_CATEGORY_WEIGHT * np.log(pop.preference.shape[1] * share + 0.1)
        if "taste" in parts:
            out += np.einsum("ij,ij->i", pop.taste[users], cat.taste[articles])
        return out


def load_oracle(settings: Settings, articles: ArticleFeatures) -> GeneratorOracle | None:
    """The generator's world behind ``articles``, or None (with the reason logged) when the
    workdir's data is not reproducibly the generator's (see the module docstring)."""
    manifest = read_manifest(settings)
    if manifest is None:
        log.info("no oracle: no generator manifest in %s", settings.bronze_articles_dir)
        return None
    if (
        manifest.get("generator") != "reco.generate"
        or manifest.get("click_model") != CLICK_MODEL
        or manifest.get("catalog", "news") != "news"
    ):
        log.info("no oracle: the manifest describes a world this oracle does not model: %s", manifest)
        return None
    from reco.generate import CATEGORIES, make_articles, make_users

    try:
        seed, n_users, n_articles, days = (int(manifest[k]) for k in ("seed", "users", "articles", "days"))
        start = dt.date.fromisoformat(str(manifest["start"]))
        drift_day = None if manifest.get("drift_day") is None else int(manifest["drift_day"])
    except (KeyError, TypeError, ValueError):
        log.info("no oracle: unreadable generator manifest %s", manifest)
        return None
    world = make_articles(seed, n_articles, days, drift_day)
    epoch_s = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp()
    article = generator_indices(articles.article_ids, "a", n_articles)
    names = np.asarray(CATEGORIES, dtype=object)
    found = article >= 0
    same = found.all() and bool(
        np.all(np.abs(epoch_s + world.published_s[article] - articles.published_s) <= 1.0)
        and np.all(
            names[world.category[article]] == np.asarray(articles.categories, dtype=object)[articles.category_codes]
        )
    )
    if not same:
        log.info("no oracle: the evaluated catalogue is not the manifest's generated world")
        return None
    return GeneratorOracle(world, make_users(seed, n_users), epoch_s, drift_day, article, n_users)
