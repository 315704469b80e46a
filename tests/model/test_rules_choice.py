"""The category cap and the decay are chosen on the validation day: the choice follows the scores, and
settings can pin them."""

from __future__ import annotations

import dataclasses

from reco.train.rules_choice import CAPS, MIN_GAIN, NO_DECAY_HOURS, RulesChoice, apply, choose_rules


def test_the_training_run_scores_every_candidate_and_keeps_the_best(world) -> None:  # type: ignore[no-untyped-def]
    choice = world.result.rules_choice
    assert len(choice["scores"]) == len(CAPS) * 2
    best = max(choice["scores"].values())
    chosen = choice["chosen"]
    label = f"cap {chosen['max_per_category'] or 'off'}, decay {'on' if chosen['decay'] else 'off'}"
    if choice["how"].startswith("best"):
        assert choice["scores"][label] == best
    else:  # kept: nothing beat the defaults (cap 5, decay on) by MIN_GAIN
        assert best < choice["scores"]["cap 5, decay on"] * (1 + MIN_GAIN) + 1e-4
    rules = world.model.rules
    assert rules.max_per_category == chosen["max_per_category"]
    assert (rules.half_life_hours == NO_DECAY_HOURS) == (not chosen["decay"])


def test_settings_pin_the_rules_and_skip_the_search(world) -> None:  # type: ignore[no-untyped-def]
    settings = world.settings.model_copy(update={"diversity_cap": 4, "decay": False})
    choice = choose_rules(settings, world.model, world.day)
    assert choice.chosen == {"max_per_category": 4, "decay": False} and choice.scores == {}
    rules = apply(dataclasses.replace(world.model.rules, half_life_hours=20.0), choice)
    assert (rules.max_per_category, rules.half_life_hours) == (4, NO_DECAY_HOURS)
    kept = apply(dataclasses.replace(world.model.rules, half_life_hours=20.0), RulesChoice({"max_per_category": 0, "decay": True}))
    assert (kept.max_per_category, kept.half_life_hours) == (0, 20.0)
