"""The point question answered through the SMT encoding (kinkcheck.point.membership) agrees with the
evaluator (kinkcheck.verify): float-tie set, real-tie set and nd set, on random networks in
float16, bfloat16, float32 and a custom 8-bit format, ties engineered on purpose half of the time."""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kinkcheck
from kinkcheck.search.point import membership

from conftest import EXAMPLES
from strategies import networks

FORMATS = ["float16", "bfloat16", "float32", {"exponent_bits": 4, "fraction_bits": 3}]


def keys(ties):
    return sorted((t["layer"], t["sample"], t["unit"]) for t in ties)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], deadline=None, max_examples=30 * int(os.environ.get("KINKCHECK_TEST_SCALE", "1")))
@given(networks(dtypes=FORMATS, max_width=3, max_batch=2), st.sampled_from([None, "pytorch", "jax"]))
def test_membership_agrees_with_the_evaluator(doc, convention):
    rep = kinkcheck.verify(doc, convention=convention, values=False)
    m = membership(kinkcheck.load(doc, convention=convention))
    assert m.float_ties == keys(rep.float_ties)
    assert m.float_tie is bool(rep.float_ties)
    assert m.real_ties == keys(rep.real_ties)
    assert m.real_tie is bool(rep.real_ties)
    if rep.differentiable is not None:
        assert m.nd is (not rep.differentiable)


@pytest.mark.parametrize(
    "name, float_tie, real_tie, nd",
    [
        ("relu_minus_relu", True, True, False),  # ReLU(w) - ReLU(-w) at w = 0: ties, yet differentiable
        ("maxpool_u_b", True, True, None),  # filled in from the evaluator below
    ],
)
def test_shipped_examples(name, float_tie, real_tie, nd):
    m = membership(str(EXAMPLES / f"{name}.json"))
    rep = kinkcheck.verify(str(EXAMPLES / f"{name}.json"))
    assert (m.float_tie, m.real_tie) == (float_tie, real_tie)
    assert m.nd is (nd if nd is not None else not rep.differentiable)


def test_float_tie_without_real_tie():
    # float16: w = x = 1 + 2^-10, w*x rounds to 1 + 2^-9 = -b (a float tie); exactly it is 2^-20 above
    doc = {
        "kinkcheck": 1,
        "dtype": "float16",
        "params": {"w": {"value": "0x1.004p+0"}, "b": {"value": "-0x1.008p+0"}},
        "inputs": {"shape": [1, 1], "values": [["0x1.004p+0"]]},
        "layers": [{"op": "linear", "weight": [["w"]], "bias": ["b"]}, {"op": "relu"}],
        "loss": {"op": "sum"},
    }
    m = membership(doc)
    assert m.to_dict() == {"float_tie": True, "real_tie": False, "nd": False, "float_ties": [[1, 0, 0]], "real_ties": [], "reason": "no real tie: f is C^1 near w"}
    doc["dtype"] = "float32"  # exact in float32: no tie at all
    assert json.dumps(membership(doc).to_dict()["float_ties"]) == "[]"
