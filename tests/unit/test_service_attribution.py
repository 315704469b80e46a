"""Feedback attribution from self-describing request ids (services.recommend.attribution)."""

from __future__ import annotations

import datetime as dt

from services.recommend.attribution import attribute, make_request_id, served_by
from services.recommend.events import to_rows
from services.recommend.schemas import Event

TOKEN = "0123456789abcdef" * 2


def test_an_id_says_who_served_it() -> None:
    request_id = make_request_id(TOKEN, "canary", "12")
    assert request_id == f"{TOKEN}.canary.12"
    assert served_by(request_id) == ("canary", "12")


def test_other_ids_say_nothing() -> None:
    for foreign in ("r1", TOKEN, f"{TOKEN}.blue.3", f"{TOKEN}.stable.", f"{TOKEN[:-1]}.stable.3", "a.b.c"):
        assert served_by(foreign) is None, foreign


def test_the_event_own_labels_win_over_the_id() -> None:
    request_id = make_request_id(TOKEN, "canary", "12")
    assert attribute(request_id, None, None) == ("12", "canary")
    assert attribute(request_id, "11", None) == ("11", "canary")
    assert attribute(request_id, None, "stable") == ("12", "stable")
    assert attribute("r1", None, None) == (None, None)


def test_lake_rows_get_the_serving_model_when_the_client_did_not_echo_it() -> None:
    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
    events = [
        Event(user_id="u1", article_id="a1", event_type="click", request_id=make_request_id(TOKEN, "canary", "12")),
        Event(user_id="u1", article_id="a2", event_type="click", request_id="r1"),
    ]
    rows = to_rows(events, now)
    # (event_id, ts, user, article, type, dwell, request_id, position, model_version, variant, propensity)
    assert [(r[8], r[9]) for r in rows] == [("12", "canary"), (None, None)]
