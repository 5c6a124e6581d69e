"""The checker's step for directional evidence (docs/certificate.md, ``"method": "directional"``):
f'(w; .) is linear or not, from the checker's own tangent pass - numeric along unit vectors and a
given direction, or symbolic (linear forms over d and ReLU atoms, ``replay._Lin``) for the
rewriting argument. Part of the independent checker: it uses only ``replay.py``.
"""

from __future__ import annotations

from gmpy2 import mpq

from .replay import CheckFailed, _Lin


def check(M, ev, claims, ad, steps, found, _qs, _check_complete_by):
    """``differentiable`` from the directional derivative f'(w; d) (docs/certificate.md)."""
    diff, correct, clarke = claims["differentiable"], claims["ad_correct"], claims["ad_in_clarke"]
    G = M.linear_map(lambda k: "auto")  # f'(w; e_j), every tie by the sign of its input tangent (columnwise, one pass)
    steps = steps + ["f'(w; e_j) for every unit vector"]
    if diff is False:
        d = _qs(ev["direction"], "evidence.direction")
        if len(d) != M.P:
            raise CheckFailed("directional: the direction must have one entry per trainable scalar")
        if M.tangent(d, lambda k: "auto")[1] == sum((x * y for x, y in zip(d, G)), mpq(0)):
            raise CheckFailed("directional (not differentiable): f'(w; d) = sum_j d_j f'(w; e_j) along the given direction")
        if correct is not False:
            raise CheckFailed("directional: AD cannot be the gradient of a non-differentiable f")
        if clarke is not None:
            raise CheckFailed("directional evidence does not decide Clarke membership of a non-differentiable f")
        return {"valid": True, "steps": steps + ["f'(w; .) is not linear along the given direction"], "complete": True}
    if diff is not True:
        raise CheckFailed("directional evidence decides differentiability")
    grad = _qs(claims["gradient"], "claims.gradient") if claims.get("gradient") is not None else None
    if grad != G:
        raise CheckFailed("directional (differentiable): the claimed gradient is not (f'(w; e_j))_j")
    if correct is not (ad == G):
        raise CheckFailed(f"directional: AD {'equals' if ad == G else 'differs from'} the gradient")
    trusted = []
    if ev.get("argument") == "rewriting":
        atoms = {"P": M.P}
        d = [_Lin(atoms, {j: mpq(1)}) for j in range(M.P)]
        df = M.tangent(d, lambda k: "symbolic")[1]
        lin = df.coef if isinstance(df, _Lin) else {}
        if any(c >= M.P for c in lin) or [lin.get(j, mpq(0)) for j in range(M.P)] != G:
            raise CheckFailed("directional (rewriting): the one-sided rules do not cancel to the linear map d -> G.d")
        steps.append("f'(w; .) rewritten exactly in ReLU atoms: every atom cancels")
    elif ev.get("argument") == "solver":
        if ev.get("answer") != "unsat" or not isinstance(ev.get("smtlib"), str) or ev.get("trust") != "solver":
            raise CheckFailed("directional (solver): the evidence must carry the SMT-LIB2 query, the answer unsat and trust: solver")
        steps.append(f"f'(w; .) linear by the solver's unsat ({ev.get('solver')}): solver-trusted, not re-checked")
        trusted.append("smtlib")
    else:
        raise CheckFailed(f"directional: unsupported argument {ev.get('argument')!r}")
    if clarke is True and ad != G:
        raise CheckFailed("directional: AD in Clarke needs AD = gradient (or other evidence)")
    if clarke is False:
        v = _qs(ev["separator"], "evidence.separator")
        if sum((v[k] * (ad[k] - G[k]) for k in range(M.P)), mpq(0)) <= 0:
            raise CheckFailed("directional (not Clarke): the separator does not separate AD from the gradient")
        if ev.get("complete_by") not in ("one-parameter", "affine"):
            raise CheckFailed("directional (not Clarke): completeness must be one-parameter or affine")
        _check_complete_by(M, ev["complete_by"], [], found)
        steps.append("AD separated from the only limiting gradient")
    out = {"valid": True, "steps": steps, "complete": not trusted}
    if trusted:
        out["trusted"] = trusted
    return out
