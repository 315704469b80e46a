"""How often the canary judge (reco.analysis) aborts a good model and lets a bad one through, on simulated counts.

The schedule mirrors the Rollout's CTR analysis: the judge is asked every ``interval`` minutes, ``looks`` times,
about the clicks and impressions of the last ``window`` minutes; the canary gets ``canary_share`` of the traffic.
As the AnalysisTemplate reco-ctr says (failureLimit 0, consecutiveSuccessLimit 2): a run is *aborted* at the
first look that says Failed, *promoted* once ``successes`` looks in a row say Successful (consecutiveSuccessLimit),
*paused* otherwise (a person decides).

    python benchmarks/bench_canary.py [--runs 400] [--samples 50000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from reco.analysis import FAILED, SUCCESSFUL, Counts, Policy, judge

# Impressions per minute over all traffic (10 articles a page): a blog, a regional site, a national site.
TRAFFIC = {"small (600/min)": 600, "medium (6k/min)": 6_000, "large (60k/min)": 60_000}
EFFECTS = {"equal CTR": 1.0, "canary 10 % worse": 0.9, "canary 20 % worse": 0.8}


def simulate(per_minute: int, effect: float, *, runs: int, samples: int, rng: np.random.Generator,
             ctr: float = 0.04, share: float = 0.05, interval: int = 5, looks: int = 6, window: int = 10,
             policy: Policy = Policy(), successes: int = 2) -> dict[str, float]:  # fmt: skip
    minutes = interval * looks
    outcome = {"aborted": 0, "promoted": 0, "paused": 0}
    for _ in range(runs):
        # Per-minute impressions and clicks of each variant.
        c_imp = rng.poisson(per_minute * share, minutes)
        s_imp = rng.poisson(per_minute * (1 - share), minutes)
        c_clk = rng.binomial(c_imp, ctr * effect)
        s_clk = rng.binomial(s_imp, ctr)
        verdicts = []
        for k in range(1, looks + 1):
            end = k * interval
            lo = max(0, end - window)
            canary = Counts(int(c_imp[lo:end].sum()), int(c_clk[lo:end].sum()))
            stable = Counts(int(s_imp[lo:end].sum()), int(s_clk[lo:end].sum()))
            verdicts.append(judge(canary, stable, policy, samples=samples).verdict)
            if verdicts[-1] == FAILED or verdicts[-successes:] == [SUCCESSFUL] * successes:
                break
        if FAILED in verdicts:
            outcome["aborted"] += 1
        elif verdicts[-successes:] == [SUCCESSFUL] * successes:
            outcome["promoted"] += 1
        else:
            outcome["paused"] += 1
    return {k: v / runs for k, v in outcome.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--samples", type=int, default=50_000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    # The schedule and limits of the deployed metric, read from the template (they cannot drift apart).
    templates = yaml.safe_load_all((Path(__file__).resolve().parents[1] / "gitops/base/analysis-templates.yaml").read_text())
    (ctr,) = [m for t in templates if t["metadata"]["name"] == "reco-ctr" for m in t["spec"]["metrics"]]
    successes, looks, interval = int(ctr["consecutiveSuccessLimit"]), int(ctr["count"]), int(ctr["interval"].rstrip("m"))
    policy = Policy()
    table = Table(title=(f"canary judge on simulated traffic ({args.runs} runs a cell; 5 % canary, CTR 4 %, "
                         f"looks every {interval} min x {looks}, {successes} Successful in a row to pass, on a 10-min window; margin {policy.margin}, threshold "
                         f"{policy.threshold}, min {policy.min_impressions} impressions) — {platform.node()}, "
                         f"{dt.date.today()}"))  # fmt: skip
    for column in ("traffic", "canary", "aborted", "promoted", "paused (a person decides)"):
        table.add_column(column)
    for traffic, per_minute in TRAFFIC.items():
        for effect_name, effect in EFFECTS.items():
            r = simulate(per_minute, effect, runs=args.runs, samples=args.samples, rng=rng, policy=policy,
                         successes=successes, looks=looks, interval=interval)  # fmt: skip
            table.add_row(traffic, effect_name, f"{r['aborted']:.1%}", f"{r['promoted']:.1%}", f"{r['paused']:.1%}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
