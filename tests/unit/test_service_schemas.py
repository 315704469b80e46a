"""Strict request decoding: wrong types and unknown fields are errors that name the field."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from services.recommend.controllers import field_of
from services.recommend.errors import InvalidRequestError
from services.recommend.events import rows_to_table, to_rows
from services.recommend.recommender import _pinned
from services.recommend.schemas import EventBatch, RecommendRequest

decode = msgspec.json.Decoder(RecommendRequest, strict=True)


def error_of(raw: bytes) -> str:
    with pytest.raises(msgspec.ValidationError) as info:
        decode.decode(raw)
    return str(info.value)


def test_defaults_and_a_valid_request() -> None:
    request = decode.decode(b'{"user_id": "u1"}')
    assert (request.k, request.exclude, request.category, request.pinned) == (10, [], None, None)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"user_id": "u1", "k": "5"}', "k"),
        (b'{"user_id": "u1", "k": 5.0}', "k"),
        (b'{"user_id": "u1", "k": true}', "k"),
        (b'{"user_id": "u1", "k": 0}', "k"),
        (b'{"user_id": "u1", "k": 101}', "k"),
        (b'{"user_id": ""}', "user_id"),
        (b'{"user_id": "u1", "extra": 1}', "extra"),
        (b'{"k": 3}', "user_id"),
        (b'{"user_id": "u1", "exclude": [1]}', "exclude[0]"),
        (b'{"user_id": "u1", "pinned": [{"article_id": "a", "position": 101}]}', "pinned[0].position"),
    ],
)
def test_validation_errors_name_the_field(raw: bytes, field: str) -> None:
    assert field_of(error_of(raw)) == field


def test_exclude_is_capped_at_1000() -> None:
    ok = msgspec.json.encode({"user_id": "u", "exclude": [f"a{i}" for i in range(1000)]})
    assert len(decode.decode(ok).exclude) == 1000
    too_many = msgspec.json.encode({"user_id": "u", "exclude": [f"a{i}" for i in range(1001)]})
    assert field_of(error_of(too_many)) == "exclude"


def test_duplicate_pins_are_rejected() -> None:
    request = decode.decode(b'{"user_id": "u", "pinned": [{"article_id": "a", "position": 1}, {"article_id": "a", "position": 2}]}')
    with pytest.raises(InvalidRequestError) as info:
        _pinned(request)
    assert info.value.field == "pinned[1].article_id"


def test_events_become_rows_of_the_event_schema() -> None:
    batch = msgspec.json.decode(
        b'{"events": [{"user_id": "u", "article_id": "a", "event_type": "read", "request_id": "r", "dwell_ms": 5,'
        b' "ts": "2024-05-01T10:00:00+02:00"}, {"user_id": "u", "article_id": "b", "event_type": "impression",'
        b' "request_id": "r", "event_id": "mine", "position": 2, "propensity": 0.25, "variant": "canary"}]}',
        type=EventBatch,
        strict=True,
    )
    now = dt.datetime(2024, 5, 2, tzinfo=dt.UTC)
    rows = to_rows(batch.events, now)
    table = rows_to_table(rows)
    assert table.num_rows == 2
    first, second = table.to_pylist()
    assert first["ts"] == dt.datetime(2024, 5, 1, 8, tzinfo=dt.UTC) and len(first["event_id"]) == 32
    assert second["ts"] == now and second["event_id"] == "mine" and second["propensity"] == 0.25
    assert second["variant"] == "canary" and second["position"] == 1  # API 1-based, lake 0-based


def test_a_read_needs_its_dwell() -> None:
    batch = msgspec.json.decode(
        b'{"events": [{"user_id": "u", "article_id": "a", "event_type": "read", "request_id": "r"}]}', type=EventBatch, strict=True
    )
    with pytest.raises(InvalidRequestError) as info:
        to_rows(batch.events, dt.datetime.now(dt.UTC))
    assert info.value.field == "events[0].dwell_ms"
