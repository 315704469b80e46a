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

A diagnostic, not part of the pipeline: it needs the generator's manifest (``reco.oracle``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from reco.errors import RecoError
from reco.evaluate import HEURISTICS, K_LIST, TestDay, baseline_lists, load_test_day, request_lists, strongest
from reco.metrics import ndcg_by_query
from reco.model import TwoStageModel
from reco.model.baselines import eligible, ranked_ids
from reco.oracle import FULL_CLICK_MODEL, load_oracle
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
    variant_lists: dict[str, dict[str, list[str]]] = {name: {} for name in VARIANTS}
    for r in test.requests:
        now_s = r.now.timestamp()
        articles = test.at(r.now)
        ok = eligible(model, r.user, now_s=now_s, user_features=test.users.get(r.user), articles=articles)
        candidates = ok.rows()
        for name, parts in VARIANTS.items():
            p = oracle.scores(r.user, candidates, now_s, parts=parts)
            variant_lists[name][r.key] = [] if p is None else ranked_ids(test.articles, candidates, p, K_LIST)
    rows += [GapRow(name, mean_ndcg(lists)) for name, lists in variant_lists.items()]
    return rows
