"""Array arithmetic shared by the semantics.

A semantics is an *arithmetic* over numpy arrays: ``const``, ``add``, ``sub``, ``mul``, ``div``,
``neg``, transcendental primitives, exact comparisons against rationals (``locate``) and against each
other (``cmp``). The network program (``program.py``) is written once against this interface; the
exact semantics (``exact.py``) and the machine semantics (``machine.py``) are two arithmetics.

The generic implementations here fix the evaluation ORDER that the machine semantics promises (the
spec's order): ``dot`` accumulates ``acc = W[:,0]*x[0]; acc = acc + W[:,j]*x[j]``; ``seq_sum`` sums
left to right starting from the first term; ``seq_accumulate`` sums each destination's terms in the
order they are given. The exact arithmetic overrides them with order-free fast versions.
"""

from __future__ import annotations

import numpy as np


class Operators:
    """add/sub/mul/div/neg as the scalars' own Python operators: for arithmetics whose scalars are
    exact objects (rationals, polynomials) that carry them."""

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def mul(self, a, b):
        return a * b

    def div(self, a, b):
        return a / b

    def neg(self, a):
        return -a


class ArrayArith:
    exact = False
    name = "abstract"

    # -- to be provided -------------------------------------------------------------------------
    def const(self, q):  # a rational/float constant as a scalar of this arithmetic
        raise NotImplementedError

    def from_floats(self, a: np.ndarray):
        raise NotImplementedError

    def zeros(self, shape):
        raise NotImplementedError

    def add(self, a, b):
        raise NotImplementedError

    def sub(self, a, b):
        raise NotImplementedError

    def mul(self, a, b):
        raise NotImplementedError

    def div(self, a, b):
        raise NotImplementedError

    def neg(self, a):
        raise NotImplementedError

    def locate(self, a, kinks):
        """(piece, kink) int arrays: piece = number of kinks strictly below a; kink = index of the
        kink a sits on, else -1."""
        raise NotImplementedError

    def cmp(self, a, b):
        """sign(a - b) elementwise as an int8 array (exact)."""
        raise NotImplementedError

    # -- generic, order-fixing implementations -------------------------------------------------
    def empty(self, shape):
        return self.zeros(shape)

    def dot(self, W, x):
        """W [out, in], x [..., in] -> [..., out]; acc = W[:,0]*x[...,0]; acc = acc + W[:,j]*x[...,j]."""
        n_in = W.shape[1]
        acc = self.mul(x[..., 0:1], W[:, 0])
        for j in range(1, n_in):
            acc = self.add(acc, self.mul(x[..., j : j + 1], W[:, j]))
        return acc

    def dot_t(self, W, g):
        """g @ W (W [out, in], g [..., out] -> [..., in]), as ``dot`` of the transpose."""
        return self.dot(np.ascontiguousarray(W.T), g)

    def seq_sum(self, a, axis=-1):
        """Left-to-right sum along ``axis`` starting from the first term."""
        a = np.moveaxis(a, axis, -1)
        acc = a[..., 0]
        for j in range(1, a.shape[-1]):
            acc = self.add(acc, a[..., j])
        return acc

    def seq_accumulate(self, terms, dest, n_dest):
        """terms [..., T] (in order), dest [T] ints in [0, n_dest) -> [..., n_dest]: each destination
        receives the in-order sum of its terms (first term first); no term -> zero."""
        dest = np.asarray(dest, dtype=np.int64)
        lead = terms.shape[:-1]
        out = self.zeros(lead + (n_dest,))
        if dest.size == 0:
            return out
        order = np.argsort(dest, kind="stable")
        d = dest[order]
        t = terms[..., order]
        starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
        counts = np.diff(np.r_[starts, d.size])
        rank = np.arange(d.size) - np.repeat(starts, counts)
        for r in range(int(counts.max())):
            sel = rank == r
            dd = d[sel]
            if r == 0:
                out[..., dd] = t[..., sel]
            else:
                out[..., dd] = self.add(out[..., dd], t[..., sel])
        return out

    def max_first(self, windows):
        """windows [..., K] -> (value of the first maximal entry, tie mask [..., K] of entries equal
        to the maximum)."""
        m = windows[..., 0]
        for j in range(1, windows.shape[-1]):
            gt = self.cmp(windows[..., j], m) > 0
            m = np.where(gt, windows[..., j], m)
        eq = self.cmp(windows, m[..., None]) == 0
        return m, eq

    def accumulate_params(self, blocks, n_theta):
        """Parameter gradient from term blocks, in the documented order: sample, then layer (forward
        order), then entry (row-major, weight before bias), then position (conv output position).

        A block is (layer_index, kind, payload, src, sign):
        - kind "outer": payload (g [N, out], x [N, in]) -> terms g[n,i]*x[n,j] for entry (i, j)
        - kind "terms": payload T [N, E, P] -> terms T[n, e, p]
        ``src`` [E] are theta indices (-1: constant, dropped), ``sign`` [E] is +1/-1.
        """
        blocks = sorted(blocks, key=lambda b: b[0])
        mats, dests = [], []
        for _, kind, payload, src, sign in blocks:
            if kind == "outer":
                g, x = payload
                T = self.mul(g[:, :, None], x[:, None, :]).reshape(g.shape[0], -1, 1)
            else:
                T = payload
            keep = src >= 0
            if not keep.any():
                continue
            T = T[:, keep, :]
            s = sign[keep]
            if (s < 0).any():
                T = T.copy()
                T[:, s < 0, :] = self.neg(T[:, s < 0, :])
            P = T.shape[2]
            mats.append(T.reshape(T.shape[0], -1))
            dests.append(np.repeat(src[keep], P))
        if not mats:
            return self.zeros((n_theta,))
        terms = np.concatenate(mats, axis=1)
        dest = np.concatenate(dests)
        N = terms.shape[0]
        if np.unique(dest).size == dest.size:
            # each parameter has one term per sample: sum over samples in batch order
            acc = terms[0]
            for n in range(1, N):
                acc = self.add(acc, terms[n])
            out = self.zeros((n_theta,))
            out[dest] = acc
            return out
        flat = terms.reshape(-1)
        return self.seq_accumulate(flat, np.tile(dest, N), n_theta)
