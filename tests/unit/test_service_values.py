"""The service's fast Feast value decoding gives what Feast's own conversion gives."""

from __future__ import annotations

import pytest
from feast.protos.feast.types.Value_pb2 import BoolList, DoubleList, Int64List, StringList, StringSet, Value
from feast.type_map import feast_value_type_to_python_type

from services.recommend.features import python_value

VALUES = [
    Value(int64_val=-(2**40)),
    Value(int32_val=7),
    Value(double_val=0.1),
    Value(float_val=1.5),
    Value(string_val="culture"),
    Value(string_val=""),
    Value(bool_val=True),
    Value(bytes_val=b"\x00\xff"),
    Value(string_list_val=StringList(val=["a1", "a2"])),
    Value(string_list_val=StringList(val=[])),
    Value(int64_list_val=Int64List(val=[1, 2])),
    Value(double_list_val=DoubleList(val=[0.5])),
    Value(bool_list_val=BoolList(val=[False])),
    # Kinds left to Feast's conversion: timestamps, JSON, sets.
    Value(unix_timestamp_val=1_700_000_000),
    Value(json_val='{"news": 2}'),
    Value(string_set_val=StringSet(val=["x", "y"])),
    Value(),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: v.WhichOneof("val") or "unset")
def test_python_value_matches_feast(value: Value) -> None:
    raw = Value.FromString(value.SerializeToString())
    expected = feast_value_type_to_python_type(raw)
    got = python_value(raw)
    assert got == expected
    assert type(got) is type(expected)
