"""Linear forms for the checker's tangent passes: ``_Lin`` (a form over the direction d and ReLU
atoms), the enclosures ``Enc`` of the cross-entropy seed, and ``CheckFailed``. Part of the independent checker (``replay.py`` uses the forms both for
the symbolic tangents of directional evidence and for its one-pass Jacobians); it imports only gmpy2.
"""

from __future__ import annotations

from gmpy2 import mpq


class CheckFailed(Exception):
    """The certificate is invalid: the message names the first failing step."""


# ----------------------------------------------------------------------------------------------
# symbolic tangents (directional evidence): linear forms over d and ReLU atoms


class Enc:
    """A certified enclosure [lo, hi] (rational end points) of a real number: the cross-entropy
    seed softmax - onehot is transcendental, everything else the checker computes is rational."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def __add__(self, o):
        if isinstance(o, Enc):
            return Enc(self.lo + o.lo, self.hi + o.hi)
        return Enc(self.lo + o, self.hi + o)

    __radd__ = __add__

    def scale(self, q):
        return Enc(self.lo * q, self.hi * q) if q >= 0 else Enc(self.hi * q, self.lo * q)

    def disjoint(self, o) -> bool:
        return self.hi < o.lo or o.hi < self.lo


def _enc(v):
    return v if isinstance(v, Enc) else Enc(v, v)


def _exp_enclosure(q) -> Enc:
    """exp(q) for rational q, from MPFR with directed rounding (the argument is rounded the same
    way first; exp is increasing)."""
    import gmpy2

    out = []
    for mode in (gmpy2.RoundDown, gmpy2.RoundUp):
        with gmpy2.context(gmpy2.get_context(), precision=160, round=mode, emin=-(2**40), emax=2**40):
            out.append(mpq(gmpy2.exp(gmpy2.mpfr(q))))
    return Enc(out[0], out[1])


class _Lin:
    """A linear form {column: rational} over the direction d (columns 0..P-1) and ReLU atoms
    max(delta, 0) (columns P, P+1, ...), registered in ``atoms``: each atom's delta is stored with
    first coefficient +1, using max(c*delta, 0) = c*max(delta, 0) (c > 0) and max(-delta, 0) =
    max(delta, 0) - delta, so equal atoms share a column and exact cancellations show. Written for
    the checker alone (the decision's copy is in decide/directional.py)."""

    def __init__(self, atoms, coef):
        self.atoms = atoms
        self.coef = {c: v for c, v in coef.items() if v != 0}

    def _other(self, o):
        if isinstance(o, _Lin):
            return o.coef
        if o == 0:
            return {}
        raise CheckFailed("symbolic tangent: a constant term appeared in a tangent")

    def __add__(self, o):
        out = dict(self.coef)
        for c, v in self._other(o).items():
            out[c] = out.get(c, mpq(0)) + v
        return _Lin(self.atoms, out)

    __radd__ = __add__

    def __neg__(self):
        return _Lin(self.atoms, {c: -v for c, v in self.coef.items()})

    def __sub__(self, o):
        return self + (-o if isinstance(o, _Lin) else -mpq(o))

    def __rsub__(self, o):
        return (-self) + o

    def __mul__(self, k):
        if isinstance(k, _Lin):
            raise CheckFailed("symbolic tangent: a product of two tangents")
        return _Lin(self.atoms, {c: v * k for c, v in self.coef.items()})

    __rmul__ = __mul__

    def __truediv__(self, k):
        return _Lin(self.atoms, {c: v / k for c, v in self.coef.items()})

    def relu(self):
        if not self.coef:
            return self
        first = min(self.coef)
        a = self.coef[first]
        canon = tuple(sorted((c, v / abs(a) * (1 if a > 0 else -1)) for c, v in self.coef.items()))
        col = self.atoms.setdefault(canon, self.atoms.get("P") + len(self.atoms) - 1)
        atom = _Lin(self.atoms, {col: abs(a)})
        return atom if a > 0 else atom - _Lin(self.atoms, dict(canon)) * abs(a)


def _relu(x):
    """max(x, 0) of a symbolic tangent; a tangent that is the number 0 stays 0."""
    if isinstance(x, _Lin):
        return x.relu()
    if x != 0:
        raise CheckFailed("symbolic tangent: a constant term appeared in a tangent")
    return mpq(0)
