"""The checker's own model of a value-iteration block (docs/implicit.md, docs/certificate.md).

Part of the independent checker: written again here from the format's definition, it imports
neither the semantics (``encodings/valueiteration.py``) nor the decision code. A block maps rewards
R [A, H, W] to V [H, W]; Q_a(s) = R_a(s) + gamma sum_{p, q} T[a, p, q] V(s + (p - c, q - c)) with V = 0
off the grid (c = (k - 1) / 2); V(s) = max_a Q_a(s).

- ``iterate`` (a fixed point): the certificate claims V* per sample; the checker verifies
  V* = max_a Q_a(V*) exactly. Along a direction, with r_a(s) = dR_a(s) + gamma (dT_a * V*)(s) and a
  selection sigma (one maximal action per state), dV = (I - gamma P_sigma)^{-1} r_sigma and
  dQ_a(s) = r_a(s) + gamma (T_a * dV)(s). A two-way tie's recorded tangent is the gap
  dQ_last - dQ_first ("left": the first tied action takes the gradient, "right": the last); a tie
  of three or more actions records every tied action's tangent and a pattern picks one action.
- ``unroll``: K exact steps from V = 0 with a forward tangent; ties are keyed by step * S + state
  and are max ties (kind "max", like a max-pool window's): a pattern picks one tied action.
- ``coherent_orientation``: det(I - gamma P) has one non-zero sign at every vertex (one tied action
  per tied state, any number of tied actions) of every sample's Clarke box - the condition under
  which the implicit method's cells are the true pieces.
"""

from __future__ import annotations

import itertools

import numpy as np
from gmpy2 import mpq

from .fixedpoint_check import _det
from .replay import CheckFailed, _ByDirection, _solve


def _geometry(L):
    """neighbours[s] = [(p*k + q, t)] for the kernel entries whose neighbour t is on the grid."""
    H, W = L.out_shape
    k = L.weight.shape[1]
    c = (k - 1) // 2
    out = []
    for i in range(H):
        for j in range(W):
            out.append([(p * k + q, (i + p - c) * W + (j + q - c)) for p in range(k) for q in range(k) if 0 <= i + p - c < H and 0 <= j + q - c < W])
    return out


def _conv(T, nb, V, a):
    """(C_a V)(s) for every state s."""
    return [sum((T[a][pq] * V[t] for pq, t in nbs), mpq(0)) for nbs in nb]


def _rows(T, nb, gamma, sel):
    """I - gamma P_sel (sel[s]: the action of state s)."""
    S = len(nb)
    M = [[mpq(1) if i == j else mpq(0) for j in range(S)] for i in range(S)]
    for s, nbs in enumerate(nb):
        for pq, t in nbs:
            M[s][t] -= gamma * T[sel[s]][pq]
    return M


def _pick(tied, c, key):
    if c in ("proxy", "left"):
        return tied[0]
    if c == "right":
        return tied[-1]
    if isinstance(c, int) and not isinstance(c, bool) and c in tied:
        return c
    raise CheckFailed(f"tie {key}: invalid choice {c!r} at a value-iteration tie")


def _record(key, tied, dq, rec, ties):
    ties.append((key, "vin", tuple(tied)))
    rec[key] = dq[tied[-1]] - dq[tied[0]] if len(tied) == 2 else {a: dq[a] for a in tied}


def layer(M, L, n, x, t, dW, choice, rec, ties):
    """Exact values and tangent of a value-iteration block for sample n."""
    nA = L.in_shape[0]
    S = len(x.reshape(-1)) // nA
    R = [[mpq(v) for v in row] for row in x.reshape(nA, S)]
    T = [[mpq(v) for v in row] for row in M.W[L.index][0].reshape(nA, -1)]
    gamma = mpq(L.vi.gamma)
    nb = _geometry(L)
    if L.vi.method == "unroll":
        return _unrolled(M, L, n, R, T, gamma, nb, x, t, dW, choice, rec, ties)
    dR = [[mpq(v) for v in row] for row in t.reshape(nA, S)]
    dT = [[mpq(v) for v in row] for row in dW[L.index][0].reshape(nA, -1)]
    claimed = M.fixed_points.get(L.index)
    if claimed is None or n >= len(claimed):
        raise CheckFailed(f"layer {L.index}: the certificate claims no fixed point for sample {n}")
    V = [mpq(v) for v in claimed[n]]
    if len(V) != S:
        raise CheckFailed(f"layer {L.index} sample {n}: the claimed fixed point has {len(V)} entries, expected {S}")
    Q = [[R[a][s] + gamma * c for a, c in enumerate(col)] for s, col in enumerate(zip(*[_conv(T, nb, V, a) for a in range(nA)]))]
    if any(max(Q[s]) != V[s] for s in range(S)):
        raise CheckFailed(f"layer {L.index} sample {n}: the claimed V* is not a fixed point of V -> max_a (R_a + gamma T_a * V)")
    r = [[dR[a][s] + gamma * c for a, c in enumerate(col)] for s, col in enumerate(zip(*[_conv(dT, nb, V, a) for a in range(nA)]))]
    tied = {s: [a for a in range(nA) if Q[s][a] == V[s]] for s in range(S)}
    fixed, auto = {}, []
    for s in range(S):
        if len(tied[s]) == 1:
            fixed[s] = tied[s][0]
            continue
        key = (L.index, n, s)
        c = choice(key)
        if c == "auto":
            auto.append(s)
        else:
            fixed[s] = _pick(tied[s], c, key)
    for combo in itertools.product(*[tied[s] for s in auto]):
        sel = {**fixed, **dict(zip(auto, combo))}
        sel = [sel[s] for s in range(S)]
        dV = _solve(_rows(T, nb, gamma, sel), [r[s][sel[s]] for s in range(S)])
        if dV is None:
            raise CheckFailed(f"layer {L.index} sample {n}: I - gamma P is singular: no implicit derivative")
        dQ = [[r[s][a] + gamma * c for a, c in enumerate(col)] for s, col in enumerate(zip(*[_conv(T, nb, dV, a) for a in range(nA)]))]
        if all(dQ[s][sel[s]] >= max(dQ[s][a] for a in tied[s]) for s in auto):
            break
    else:
        raise CheckFailed(f"layer {L.index} sample {n}: no selection of the tied actions is consistent with the direction")
    for s in range(S):
        if len(tied[s]) > 1:
            _record((L.index, n, s), tied[s], dQ[s], rec, ties)
    return np.array(V, dtype=object).reshape(L.out_shape), np.array(dV, dtype=object).reshape(L.out_shape)


def _unrolled(M, L, n, R, T, gamma, nb, x, t, dW, choice, rec, ties):
    """K exact steps from V = 0 with the forward tangent; the tangents may be linear forms (the
    replay's one-pass Jacobian). A tie (several maximal actions at a state of step k) is a max tie
    like a max-pool window's: recorded as ("max", tied actions) with the tangent of every tied
    Q value; the tangent passed on is the chosen action's ("proxy": the first tied action, the
    framework's max backward; an int: that action; "auto": the largest tangent, numeric passes)."""
    nA = len(T)
    S = len(nb)
    dR = [list(row) for row in t.reshape(nA, S)]
    dT = [list(row) for row in dW[L.index][0].reshape(nA, -1)]
    V, dV = [mpq(0)] * S, [mpq(0)] * S
    for k in range(L.vi.iterations):
        CV = [_conv(T, nb, V, a) for a in range(nA)]
        Q = [[R[a][s] + gamma * CV[a][s] for a in range(nA)] for s in range(S)]
        dQ = [[dR[a][s] + gamma * (_conv(dT, nb, V, a)[s] + _conv(T, nb, dV, a)[s]) for a in range(nA)] for s in range(S)]
        newV, newdV = [], []
        for s in range(S):
            m = max(Q[s])
            tied = [a for a in range(nA) if Q[s][a] == m]
            newV.append(m)
            if len(tied) == 1:
                newdV.append(dQ[s][tied[0]])
                continue
            key = (L.index, n, k * S + s)
            ties.append((key, "max", tuple(tied)))
            rec[key] = {a: dQ[s][a] for a in tied}
            c = choice(key)
            if c == "auto":
                if M._atoms is not None:
                    raise _ByDirection(c)
                newdV.append(max(dQ[s][a] for a in tied))
                continue
            if c == "symbolic":
                raise CheckFailed(f"tie {key}: value-iteration ties have no symbolic tangent")
            a = _pick(tied, c, key)
            newdV.append(M._mark(key, dQ[s][a]) if M._inject is not None else dQ[s][a])
        V, dV = newV, newdV
    return np.array(V, dtype=object).reshape(L.out_shape), np.array(dV, dtype=object).reshape(L.out_shape)


def ad_choice(key, cv, tied, functionals):
    """An AD-pattern cell's choice at an unrolled block's tie: the first tied action (the max
    backward's) or an action whose Q functional equals it."""
    if cv != tied[0]:
        F = functionals()
        if cv not in F or F[cv] != F[tied[0]]:
            raise CheckFailed(f"ad pattern: value-iteration tie {key} does not pass the gradient where AD does")


def not_affine(net, upto):
    """Completeness by affine tie inputs fails when a value-iteration block (at or before the last
    tie's layer) shapes the ties' arguments: Q_k multiplies T by values that depend on T."""
    if any(L.op == "value_iteration" for L in net.layers[: upto + 1]):
        raise CheckFailed("completeness: a value-iteration block shapes the ties' arguments (not affine)")


def coherent_orientation(M, layer_inputs) -> int:
    """Every value-iteration block's Clarke box at every sample: det(I - gamma P) of one non-zero
    sign at every vertex (one tied action per tied state: det is affine in each state's selection
    weights, so one sign on the vertices is one sign on the whole box). Returns the vertices
    checked."""
    net = M.net
    count = 0
    for L in net.layers:
        if L.op != "value_iteration":
            continue
        if L.vi.method != "iterate":
            raise CheckFailed(f"layer {L.index}: ties of an unrolled value-iteration block are not certified by the implicit method")
        nA = L.in_shape[0]
        T = [[mpq(v) for v in row] for row in M.W[L.index][0].reshape(nA, -1)]
        gamma = mpq(L.vi.gamma)
        nb = _geometry(L)
        S = len(nb)
        for n in range(net.batch):
            R = [list(row) for row in layer_inputs(M, n)[L.index].reshape(nA, S)]
            V = [mpq(v) for v in M.fixed_points[L.index][n]]
            Q = [[R[a][s] + gamma * c for a, c in enumerate(col)] for s, col in enumerate(zip(*[_conv(T, nb, V, a) for a in range(nA)]))]
            tied = [[a for a in range(nA) if Q[s][a] == V[s]] for s in range(S)]
            sign = None
            for sel in itertools.product(*tied):
                d = _det(_rows(T, nb, gamma, list(sel)))
                sg = (d > 0) - (d < 0)
                if sg == 0 or (sign is not None and sg != sign):
                    raise CheckFailed(f"layer {L.index} sample {n}: the Clarke Jacobian of the Bellman map is not coherently oriented (a vertex determinant is {'zero' if sg == 0 else 'of the other sign'})")
                sign = sg
                count += 1
    return count
