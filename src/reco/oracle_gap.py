"""Where a model's gap to the ceiling lies, on a generated world: the oracle with parts of its click model removed.

``reco model oracle-gap --date D`` ranks the same requests as the evaluation of D (each session of D,
under the evaluated model's eligibility, against that session's clicks) by the generator's click
probability with some of its terms kept (``reco.oracle.GeneratorOracle.scores``' ``parts``), beside the
served model and the strongest heuristic. A term whose removal costs the oracle nothing is not worth a
model's effort; a term that carries most of the ceiling is where the model's gap is.

One row is not a part of the click model: *preference + the logging policy's prior* ranks by what the
users like and what the site's own recommender believed of each article. On logged clicks it can score
above the oracle, because an article can only be clicked where it was shown: the offline truth rewards
predicting the logging policy's exposure as well as the users' interest. A model that gains by imitating
what the old policy showed has learnt that policy, not the readers; read a gain with this row in mind.

One row replaces the true quality with the best a model could learn of it from the log so far
(``LoggedQuality``): everything else stays true, so it is the ceiling of any model whose evidence of an
article's appeal is its clicks — on the demo world about 1.08–1.16× the trending rule.

A diagnostic, not part of the pipeline: it needs the generator's manifest (``reco.oracle``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reco.errors import RecoError
from reco.evaluate import (
    HEURISTICS,
    K_LIST,
    TestDay,
    baseline_lists,
    load_test_day,
    read_day_events,
    request_lists,
    strongest,
)
from reco.generate import CLICK_BASE_LOGIT
from reco.intraday import REFRESH_S
from reco.metrics import ndcg_by_query
from reco.model import TwoStageModel
from reco.model.articles import epoch_seconds
from reco.model.baselines import eligible, ranked_ids
from reco.oracle import FULL_CLICK_MODEL, GeneratorOracle, generator_indices, load_oracle
from reco.settings import Settings

# Rows of the table: label -> the click-model parts kept.
VARIANTS: dict[str, frozenset[str]] = {
    "oracle (full click model)": FULL_CLICK_MODEL,
    "oracle without taste": FULL_CLICK_MODEL - {"taste"},
    "oracle with the median half-life": FULL_CLICK_MODEL - {"half_life"},
    "oracle without quality": FULL_CLICK_MODEL - {"quality"},
    "preference + quality": frozenset({"preference", "quality"}),
    "preference only": frozenset({"preference"}),
    "preference + the logging policy's prior": frozenset({"preference", "policy_prior"}),
}


class LoggedQuality:
    """What the log can tell of each article's quality, at best: the Bayes (MAP) estimate of the latent
    quality of every generated article from the impressions and clicks logged before a time (D-1 and D),
    with *everything else* known — each viewer's true preference and taste, the slot's position bias, the
    article's own half-life — and the generator's N(0, QUALITY_SD²) prior. A ranking that uses it in place
    of the true quality is the ceiling of any model that learns an article's quality from its clicks so far.

    ``events``: silver events with ``ts``, ``user_id``, ``article_id``, ``event_type``, ``request_id``,
    ``position`` (an impression is clicked when its request has a click on the same article)."""

    ITERATIONS = 12  # Newton steps on the (concave) log posterior, from q = 0

    def __init__(self, oracle: GeneratorOracle, events: pd.DataFrame) -> None:
        from reco.generate import QUALITY_SD, position_bias

        self.oracle = oracle
        self.prior_var = QUALITY_SD**2
        shown = events[events["event_type"] == "impression"]
        clicks = events[events["event_type"] == "click"]
        clicked = set(zip(clicks["request_id"].astype(str), clicks["article_id"].astype(str), strict=True))
        world = oracle.world
        articles = generator_indices(shown["article_id"].to_numpy(), "a", len(world.published_s))
        users = generator_indices(shown["user_id"].to_numpy(), "u", oracle.n_users)
        ok = (articles >= 0) & (users >= 0) & shown["position"].notna().to_numpy()
        shown, articles, users = shown[ok], articles[ok], users[ok]
        at = epoch_seconds(shown["ts"])
        self.article = articles
        self.at_s = at
        self.clicked = np.array(
            [(r, a) in clicked for r, a in zip(shown["request_id"].astype(str), shown["article_id"].astype(str), strict=True)],
            dtype=np.float64,
        )
        t = at - oracle.epoch_s
        self.logit = CLICK_BASE_LOGIT + oracle.user_terms(users, articles, t)
        self.scale = position_bias(shown["position"].to_numpy()) * np.exp2(
            -(t - world.published_s[articles]) / world.half_life_s[articles]
        )
        self.n_articles = len(world.published_s)
        self._cache: dict[float, np.ndarray] = {}

    def at(self, now_s: float) -> np.ndarray:
        """(n generated articles,) the estimate from the impressions before the refresh boundary of ``now_s``."""
        boundary = float(np.floor(now_s / REFRESH_S) * REFRESH_S)
        if boundary not in self._cache:
            self._cache[boundary] = self._estimate(self.at_s < boundary)
        return self._cache[boundary]

    def _estimate(self, keep: np.ndarray) -> np.ndarray:
        art, logit, scale, y = self.article[keep], self.logit[keep], self.scale[keep], self.clicked[keep]
        q = np.zeros(self.n_articles)
        for _ in range(self.ITERATIONS):
            # P(click) = scale * sigmoid(logit + q); gradient and curvature of the Bernoulli log likelihood.
            sig = 1.0 / (1.0 + np.exp(-(logit + q[art])))
            p = np.clip(scale * sig, 1e-12, 1.0 - 1e-12)
            dp = scale * sig * (1.0 - sig)
            d2p = dp * (1.0 - 2.0 * sig)
            grad = y * dp / p - (1.0 - y) * dp / (1.0 - p)
            curv = y * (d2p / p - (dp / p) ** 2) - (1.0 - y) * (d2p / (1.0 - p) + (dp / (1.0 - p)) ** 2)
            g = np.bincount(art, grad, self.n_articles) - q / self.prior_var
            h = np.bincount(art, curv, self.n_articles) - 1.0 / self.prior_var
            q = q - g / np.minimum(h, -1e-9)
        return q


# The oracle with the quality it could learn from the log so far (``LoggedQuality``) instead of the true one.
LOGGED_QUALITY = "oracle with quality estimated from the log so far"


@dataclass
class GapRow:
    name: str
    ndcg: float  # mean NDCG@10 over the requests


def model_version_of(settings: Settings, day: dt.date) -> str:
    """The registry version the daily run of ``day`` trained (its ``runs/<day>/summary.json``)."""
    path = settings.runs_dir / day.isoformat() / "summary.json"
    try:
        version = json.loads(path.read_text()).get("model_version")
    except (OSError, ValueError) as error:
        raise RecoError(f"no run summary for {day} at {path}: give --version") from error
    if not version:
        raise RecoError(f"the run of {day} registered no model ({path}): give --version")
    return str(version)


def oracle_gap(settings: Settings, day: dt.date, version: str | None = None) -> list[GapRow]:
    """The table (see the module docstring) for registry ``version`` (default: the one ``day``'s run trained)."""
    from reco.model.pyfunc import load_model_version

    model = load_model_version(settings, version or model_version_of(settings, day))
    return gap_rows(settings, model, load_test_day(settings, day, max_age_hours=model.rules.max_age_hours))


def gap_rows(settings: Settings, model: TwoStageModel, test: TestDay) -> list[GapRow]:
    """The table for ``model`` on ``test``: the same requests, truth and eligibility as ``reco.evaluate``."""
    oracle = load_oracle(settings, test.articles)
    if oracle is None:
        raise RecoError(f"no generator oracle in {settings.workdir}: {test.day}'s data is not a rebuildable generated world")
    truth = {r.key: r.truth for r in test.requests}

    def mean_ndcg(lists: Mapping[str, list[str]]) -> float:
        values = list(ndcg_by_query(lists, truth).values())
        return float(np.mean(values)) if values else float("nan")

    rows = [GapRow(f"served model (version {model.version or 'unregistered'})", mean_ndcg(request_lists(model, test)))]
    baselines = baseline_lists(model, test)
    scored = {name: {"ndcg@10": mean_ndcg(baselines[name])} for name in HEURISTICS}
    best = strongest(scored)
    rows.append(GapRow(f"strongest heuristic ({best})", scored[best]["ndcg@10"]))
    previous = read_day_events(settings, test.day - dt.timedelta(days=1))
    events = test.events if previous.empty else pd.concat([previous, test.events], ignore_index=True)
    logged = LoggedQuality(oracle, events)
    variant_lists: dict[str, dict[str, list[str]]] = {name: {} for name in (*VARIANTS, LOGGED_QUALITY)}
    for r in test.requests:
        now_s = r.now.timestamp()
        articles = test.at(r.now)
        ok = eligible(model, r.user, now_s=now_s, user_features=test.users.get(r.user), articles=articles)
        candidates = ok.rows()
        for name, parts in VARIANTS.items():
            p = oracle.scores(r.user, candidates, now_s, parts=parts)
            variant_lists[name][r.key] = [] if p is None else ranked_ids(test.articles, candidates, p, K_LIST)
        p = oracle.scores(r.user, candidates, now_s, quality=logged.at(now_s))
        variant_lists[LOGGED_QUALITY][r.key] = [] if p is None else ranked_ids(test.articles, candidates, p, K_LIST)
    rows += [GapRow(name, mean_ndcg(lists)) for name, lists in variant_lists.items()]
    return rows
