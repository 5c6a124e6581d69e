"""The papers' examples as network files under proofs/examples/,
with the facts the papers state asserted exactly. Expected values come from the papers, not from
running kinkcheck."""

from fractions import Fraction

import pytest

import kinkcheck

from conftest import EXAMPLES


def verify(name, **kw):
    return kinkcheck.verify(str(EXAMPLES / name), values=True, **kw)


def fr(strings):
    return [Fraction(s) for s in strings]


def hexes(strings):
    return [float.fromhex(s) for s in strings]


def tie_keys(ties):
    return {(t["layer"], t["sample"], t["unit"], t["kink"]) for t in ties}


def test_relu_minus_relu_no_bias():
    # f(w) = ReLU(w) - ReLU(-w) = w; AD at 0 (ReLU'(0)=0) gives 0 (true derivative 1).
    r = verify("relu_minus_relu.json")
    assert fr(r.ad) == [0]
    assert hexes(r.machine_ad) == [0.0]
    assert tie_keys(r.real_ties) == {(1, 0, 0, "0"), (1, 0, 1, "0")}
    assert tie_keys(r.float_ties) == tie_keys(r.real_ties)
    assert r.compensation is False
    # ReLU'(0)=1 would give 1 - (-1) = 2: the float AD output depends on the proxy choice
    assert r.choice_sensitive is True
    assert r.loss_exact == "0"


def test_relu_minus_relu_with_relu_prime_one():
    r = verify("relu_minus_relu.json", convention={"relu": [1]})
    # d/dw [ReLU(w) - ReLU(-w)] with ReLU'(0) = 1: 1*1 - 1*(-1) = 2
    assert fr(r.ad) == [2]


def test_hardsigmoid_shared_bias():
    # f(w) = HS(3+w) + HS(-3+w) = 1 + w/6 near 0; AD with proxy 0 at +-3 gives 0.
    r = verify("hardsigmoid_shared_bias.json")
    assert fr(r.ad) == [0]
    assert hexes(r.machine_ad) == [0.0]
    assert tie_keys(r.real_ties) == {(1, 0, 0, "3"), (1, 1, 0, "-3")}
    assert Fraction(r.loss_exact) == 1  # HS(3) + HS(-3) = 1 + 0


def test_maxpool_u_b_first_tie_break():
    # f(u,b) = max(u+b, b) - max(-u+b, b) = u; AD with first-index tie-break gives (2, 0).
    r = verify("maxpool_u_b.json")
    assert fr(r.ad) == [2, 0]
    assert hexes(r.machine_ad) == [2.0, 0.0]
    assert {(t["layer"], t["sample"], t["unit"]) for t in r.real_ties} == {(1, 0, 0), (1, 0, 1)}
    assert all(t["kink"] == "max" and len(t["entries"]) == 2 for t in r.real_ties)


def test_maxpool_u_b_split_gives_the_gradient():
    # with split tie-break each window sends 1/2 to both entries: du = 1/2*1 - 1/2*(-1) = 1, db = 0
    r = verify("maxpool_u_b.json", convention={"maxpool1d": "split"})
    assert fr(r.ad) == [1, 0]


@pytest.mark.parametrize("name", ["mixed_proxy_g_minus_h.json", "mixed_proxy_h_of_minus_h.json"])
def test_mixed_proxies(name):
    # g - h and h(-h): both identically 0, AD at 0 gives -1.
    r = verify(name)
    assert fr(r.ad) == [-1]
    assert hexes(r.machine_ad) == [-1.0]
    assert Fraction(r.loss_exact) == 0
    assert len(r.real_ties) == 2


def test_boustany_float32_toy():
    # zero(t) = max_first(z) - max_split(z) = 0; derivative 0 over the reals, float32 AD = 2^-24.
    r = verify("boustany_maxpool_toy.json")
    assert fr(r.ad) == [0]
    assert hexes(r.machine_ad) == [2.0**-24]
    assert Fraction(r.loss_exact) == 0
    assert float.fromhex(r.loss_machine) == 0.0
    # both max-pools tie in both semantics (all four z_i equal): no branch differs
    assert r.compensation is False
    assert {(t["layer"], t["kink"]) for t in r.float_ties} == {(2, "max"), (4, "max")}


def test_boustany_toy_in_float64_is_still_wrong_but_smaller():
    # The same phenomenon at 64 bits: 0.75 * fl64(1.14-in-float32) is exact in binary64
    # (24-bit significand times 3/4 needs 26 bits), so the float64 run of the same numbers is exact.
    import json

    doc = json.loads((EXAMPLES / "boustany_maxpool_toy.json").read_text())
    doc["dtype"] = "float64"
    r = kinkcheck.verify(doc, values=True)
    assert hexes(r.machine_ad) == [0.0]


def test_bias_network_at_real_tie():
    r = verify("bias_relu_clarke.json")
    assert tie_keys(r.real_ties) == {(1, 0, 0, "0")}
    # AD by hand: hidden h = relu(W1 x + b1) = (relu(0), relu(0.5 - 1 + 1)) = (0, 0.5); out = 2*0 - 0.5 + 0.25
    # dL/dW2 = h = (0, 1/2); dL/db2 = 1; hidden grads g_h = W2 = (2, -1), unit 0 at the tie -> 0;
    # unit 1 active -> -1: dW1 = [[0, 0], [-1, -1]], db1 = (0, -1)
    assert fr(r.ad) == [0, 0, -1, -1, 0, -1, 0, Fraction(1, 2), 1]
    assert Fraction(r.loss_exact) == Fraction(-1, 4)


def test_maxpool_ad_pattern_lp():
    # f(u, b) = max(u + b, b): pieces u + b (u > 0, gradient (1, 1)) and b (u < 0, gradient (0, 1));
    # AD with the first entry gives (1, 1), a limiting gradient (the LP condition holds: du > 0)
    r = verify("maxpool_ad_pattern_lp.json")
    assert fr(r.ad) == [1, 1]
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    assert sorted(tuple(fr(g)) for g in r.decision["limiting_gradients"]) == [(0, 1), (1, 1)]
    assert any(t.startswith("ad-pattern") for t in r.decision["theorems"])


def test_cross_entropy_relu_tie():
    # the tie: W[0] . x_0 + b[0] = 1 + 2 - 3 = 0; ReLU'(0) = 0 sends nothing through unit 0, so the
    # AD output has exact zeros for W[0, :] and b[0]; the other entries are softmax values (enclosed)
    r = verify("cross_entropy_relu_tie.json")
    assert tie_keys(r.real_ties) == {(1, 0, 0, "0")}
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    assert r.gradient is None
    assert r.ad[0] == r.ad[1] == "0" and r.ad[6] == "0"  # W[0, 0], W[0, 1], b[0]: unit 0 carries no cotangent


def test_two_layer_pairs():
    # f(w) = w_0 + w_1 + w_2 near 0: gradient (1, 1, 1); every ReLU at 0 with ReLU'(0) = 0 gives AD 0
    r = verify("two_layer_pairs.json")
    assert len(r.real_ties) == 12
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, False, False)
    assert fr(r.gradient) == [1, 1, 1] and fr(r.ad) == [0, 0, 0]


# fixed-point (DEQ) layers (docs/implicit.md): facts derived by hand in each file's description


def test_deq_tie_with_an_invertible_clarke_jacobian():
    r = verify("deq_tie_invertible.json")
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (False, False, True)
    # W[1,1] and b[1]: z1 = (W10 z0 + b1) / (1 - W11) with z0 = 0: dz1/dW11 = z1 / (1 - W11) = (4/3) / (3/4)
    assert fr(r.ad) == [0, 0, 0, Fraction(16, 9), 0, Fraction(4, 3)]
    smp = r.implicit[0]["samples"][0]
    assert smp["tied_units"] == [0] and smp["clarke_jacobian_invertible"] is True and smp["vertices"] == 2


def test_deq_relu_minus_relu():
    r = verify("deq_relu_minus_relu.json")
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (True, False, False)
    assert fr(r.gradient) == [1] and fr(r.ad) == [0]


def test_deq_singular_clarke_element():
    r = verify("deq_singular_vertex.json")
    assert (r.differentiable, r.ad_correct, r.ad_in_clarke) == (None, None, None)
    smp = r.implicit[0]["samples"][0]
    assert smp["clarke_jacobian_invertible"] is False
    assert {int(k): Fraction(v) for k, v in smp["singular_witness"].items()} == {0: Fraction(1, 2)}  # 1 - 2d = 0
    assert r.implicit[0]["exact"]["unique"] is None  # ||W|| * Lip = 2: no contraction


def test_deq_float_solver_stops_early():
    r = verify("deq_early_stop.json")
    imp = r.implicit[0]
    assert imp["machine"]["iterations"] == 3 and imp["machine"]["converged"] is False
    assert imp["pattern_agrees"] is False  # exact: clamped at 1; float: z_3 on the linear piece
    assert fr(r.ad) == [0]  # dz*/du = 0 on the clamped piece
    # the machine's implicit backward (adjoint iteration, 3 steps: 1, 15/8, 169/64, 1695/512) on the linear piece
    assert hexes(r.machine_ad) == [float(Fraction(1695, 512))]
    assert r.compensation is True
