"""torch's run predicted for every summation order: an arithmetic over enclosures.

:class:`TorchModel` is an arithmetic for the replay engine (:mod:`kinkcheck.testgen.engine`) whose
values are :class:`Enc` (exact centre, exact radius): an enclosure that holds for EVERY order of the
sums torch may use (BLAS blocking, fused multiply-adds, float32 accumulation of float16/bfloat16),
and is a single point where every order gives the same float (a single rounding, or sums whose
every partial sum is representable). The torch exporter turns these enclosures into the
predictions the generated file asserts of torch's own run.
"""

from fractions import Fraction

from .engine import Exact, evaluate


class Enc:
    """torch's value lies in [c - r, c + r] whatever order it sums in; r == 0: it is exactly c;
    r None: nothing is known (a branch torch's order could change)."""

    __slots__ = ("c", "r")

    def __init__(self, c, r):
        self.c = c
        self.r = r


class TorchModel:
    """An arithmetic for the replay engine whose values are :class:`Enc`.

    Model of torch's CPU kernels: every operation rounds to nearest (ties to even) in a precision at
    least the dtype's; a matrix product or reduction sums its terms in ANY order (any tree), possibly
    with fused multiply-adds and a wider accumulator rounded once at the end; subnormals may be
    flushed (FTZ/DAZ) by vectorised kernels. Exactly known results: a single rounding on exactly
    known operands, or a sum whose every partial sum is representable (then every order is exact).
    Otherwise the standard bound |computed - exact| <= gamma_k * sum |terms| (gamma_k = k u / (1 - k u))
    plus an absolute slack per operation for underflow and flushed subnormals. Activation formulas
    of more than one operation (hardsigmoid, hardswish) are enclosed with a rounding per operation,
    their constants within a relative u of the exact ones."""

    def __init__(self, fmt):
        from gmpy2 import mpq

        self.fmt = fmt
        self.mpq = mpq
        self.u = Fraction(1, 2**fmt.precision)
        # torch's kernels hold some constants in float32 even for float64 tensors (hardsigmoid's
        # backward multiplies by a float 1/6): constants and multi-operation formulas get at least
        # float32's relative error
        self.uc = max(self.u, Fraction(1, 2**24))
        self.tiny = Fraction(2) ** fmt.emin  # the smallest normal number
        self.big = Fraction(fmt.max_finite)

    def gamma(self, k):
        return k * self.u / (1 - k * self.u)

    def rn(self, v):
        r = self.fmt.round_rational(self.mpq(v.numerator, v.denominator))
        return None if r in (float("inf"), float("-inf")) else Fraction(r)

    def representable(self, v):
        return abs(v) <= self.big and self.fmt.is_representable(self.mpq(v.numerator, v.denominator))

    def sub_normal(self, v):
        return v != 0 and abs(v) < self.tiny

    def known(self, v, operands):
        """RN(v) if every implementation of one operation on these exact operands gives it."""
        if any(self.sub_normal(o) for o in operands):
            return None
        r = self.rn(v)
        if r is None or (self.sub_normal(v) and r != 0):
            return None
        return Enc(r, Fraction(0))

    def may_be_subnormal(self, a):
        lo, hi = a.c - a.r, a.c + a.r
        return hi > -self.tiny and lo < self.tiny and not (lo == 0 and hi == 0)

    # -- the arithmetic interface ---------------------------------------------------------------
    def val(self, h):
        return Enc(Fraction(float.fromhex(h)), Fraction(0))

    def const(self, q, h):
        q = Fraction(q)
        if Fraction(float.fromhex(h)) == q:
            return Enc(q, Fraction(0))
        return Enc(q, abs(q) * self.uc)

    def zero(self):
        return Enc(Fraction(0), Fraction(0))

    def unknown(self):
        return Enc(Fraction(0), None)

    def neg(self, a):
        return Enc(-a.c, a.r)

    def add(self, a, b):
        return self.terms([(a, None, 1), (b, None, 1)])

    def sub(self, a, b):
        return self.terms([(a, None, 1), (b, None, -1)])

    def mul(self, a, b):
        return self.terms([(a, b, 1)])

    def div(self, a, b):
        if a.r is None or b.r is None or b.r != 0 or b.c == 0:
            return self.unknown()
        d = abs(b.c)
        if a.r == 0 and d.numerator & (d.numerator - 1) == 0 and d.denominator & (d.denominator - 1) == 0:
            # by a power of two: exact scaling in every implementation (torch fuses divisions
            # into its kernels - avg_pool sums then divides in float32 - so only exact ones are known)
            k = self.known(a.c / b.c, [a.c, b.c])
            if k is not None:
                return k
        c = a.c / b.c
        r = a.r / abs(b.c)
        r = r + self.u * (abs(c) + r) + 2 * self.tiny
        return Enc(c, r) if abs(c) + r < self.big else self.unknown()

    def gt(self, a, b):
        if a.r is None or b.r is None:
            return None
        if a.c - a.r > b.c + b.r:
            return True
        if a.c + a.r <= b.c - b.r:
            return False
        return None

    def eq(self, a, b):
        if a.r is None or b.r is None:
            return None
        if a is b:
            return True
        if a.r == 0 and b.r == 0:
            return a.c == b.c
        if a.c + a.r < b.c - b.r or b.c + b.r < a.c - a.r:
            return False
        return None

    def terms(self, ts):
        if any(a.r is None or (b is not None and b.r is None) for a, b, _ in ts):
            return self.unknown()
        if not ts:
            return self.zero()
        if all(a.r == 0 and (b is None or b.r == 0) for a, b, _ in ts):
            k = self._known_sum(ts)
            if k is not None:
                return k
        c = r_in = S = slack = Fraction(0)
        for a, b, s in ts:
            if b is None:
                v, r = a.c, a.r
                if self.may_be_subnormal(a):
                    slack += self.tiny
            else:
                v, r = a.c * b.c, abs(a.c) * b.r + abs(b.c) * a.r + a.r * b.r
                if self.may_be_subnormal(a) or self.may_be_subnormal(b):
                    slack += (abs(a.c) + a.r) * (abs(b.c) + b.r)
            c += v if s > 0 else -v
            r_in += r
            S += abs(v) + r
        k = 2 * len(ts) + 1
        r = r_in + self.gamma(k) * S + k * self.tiny + slack
        if S * (1 + self.gamma(k)) + r >= self.big:
            return self.unknown()
        return Enc(c, r)

    def _known_sum(self, ts):
        ops = [a.c for a, _, _ in ts] + [b.c for _, b, _ in ts if b is not None]
        if any(self.sub_normal(o) for o in ops):
            return None
        vals = [(a.c if b is None else a.c * b.c) * s for a, b, s in ts]
        nz = [v for v in vals if v != 0]
        if not nz:
            return self.zero()
        if len(nz) == 1:
            return self.known(nz[0], [])
        if not all(self.representable(v) and not self.sub_normal(v) for v in nz):
            return None
        if len(nz) == 2:
            return self.known(nz[0] + nz[1], [])
        if len(nz) > 12:
            return None
        sums = {Fraction(0)}
        for v in nz:
            sums |= {t + v for t in sums}
        if all(self.representable(t) and not self.sub_normal(t) for t in sums):
            return Enc(sum(nz), Fraction(0))
        return None

    def program(self, tree, x):
        if x.r is None:
            return self.unknown()
        k = tree[0]
        if k == "x":
            return x
        if k == "c":
            return self.const(tree[1], tree[2])
        if k == "neg" and tree[1][0] == "x":
            return self.neg(x)
        if k == "mul" and sorted((tree[1][0], tree[2][0])) == ["c", "x"]:
            c = tree[1] if tree[1][0] == "c" else tree[2]
            if Fraction(float.fromhex(c[2])) == Fraction(c[1]):
                return self.mul(x, self.const(c[1], c[2]))  # one product: torch computes x * c
        lo, hi, S, n = self._interval(tree, x.c - x.r, x.c + x.r)
        c = evaluate(Exact(), tree, x.c)
        g = 2 * n * self.uc / (1 - 2 * n * self.uc)
        r = max(hi - c, c - lo) + g * S + 2 * n * self.tiny
        return Enc(c, r) if abs(c) + r < self.big else self.unknown()

    def _interval(self, tree, lo, hi):
        """(lo, hi) of the exact formula over [lo, hi], the sum of its operations' magnitudes, and the
        number of roundings (operations and inexact constants)."""
        k = tree[0]
        if k == "x":
            return lo, hi, Fraction(0), 0
        if k == "c":
            q = Fraction(tree[1])
            return q, q, Fraction(0), 0 if Fraction(float.fromhex(tree[2])) == q else 1
        a = self._interval(tree[1], lo, hi)
        if k == "neg":
            return -a[1], -a[0], a[2], a[3]
        b = self._interval(tree[2], lo, hi)
        if k == "add":
            rl, rh = a[0] + b[0], a[1] + b[1]
        elif k == "sub":
            rl, rh = a[0] - b[1], a[1] - b[0]
        elif k == "mul":
            ps = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
            rl, rh = min(ps), max(ps)
        else:
            if b[0] <= 0 <= b[1]:
                raise ZeroDivisionError("division by an interval around 0")
            ps = [a[0] / b[0], a[0] / b[1], a[1] / b[0], a[1] / b[1]]
            rl, rh = min(ps), max(ps)
        return rl, rh, a[2] + b[2] + max(abs(rl), abs(rh)), a[3] + b[3] + 1
