"""``kinkcheck.torch.DEQ``: a deep-equilibrium layer as PyTorch users write it, and the module shape
``from_torch`` reads as a ``fixed_point`` layer (docs/implicit.md).

``DEQ(W, U, b, activation, max_iter=100, tol=0.0)`` maps x [N, in] to the fixed point of
z -> activation(z W^T + x U^T + b): forward by plain iteration from zeros without autograd (torch's
own matmul order) until max |z' - z| <= tol or ``max_iter`` iterations; backward implicitly, as DEQ
libraries do: one differentiable application f(z*) at the fixed point (z* detached), whose incoming
gradient g is replaced by lambda = g + J^T lambda (J = df/dz at z*, the activation's autograd
derivative there; vector-Jacobian products through a second application), iterated from g with the
same settings. ``W``, ``U``, ``b`` are ``torch.nn.Parameter``s; ``activation`` is one
of the elementwise modules ``from_torch`` reads (ReLU, LeakyReLU, ReLU6, Hardtanh, ...).
``solver="anderson"`` (with ``m``, ``beta``) runs the forward pass with Anderson acceleration in
the order kinkcheck's machine semantics documents (``encodings/fixedpoint._anderson``), with
torch's matmul for the cell; the backward pass is the same.
"""

from __future__ import annotations

from .torch_modules import _torch

if _torch is not None:
    _nn = _torch.nn

    class DEQ(_nn.Module):
        """z* = activation(z* W^T + x U^T + b), differentiated implicitly (see the module docstring)."""

        def __init__(self, W, U, b=None, activation=None, max_iter: int = 100, tol: float = 0.0, solver: str = "iterate", m: int = 5, beta: float = 1.0):
            super().__init__()
            self.W = _nn.Parameter(_torch.as_tensor(W))
            self.U = _nn.Parameter(_torch.as_tensor(U))
            self.b = _nn.Parameter(_torch.as_tensor(b)) if b is not None else None
            self.act = activation if activation is not None else _nn.ReLU()
            self.max_iter = int(max_iter)
            self.tol = float(tol)
            self.iterations = 0
            self.last_pre = None  # the pre-activation at the last forward pass's float fixed point (for gradcheck)
            self.last_z = None  # that float fixed point
            self.last_lambda = None  # the last backward pass's adjoint (the implicit hook's result)
            if solver not in ("iterate", "anderson"):
                raise ValueError(f"DEQ: solver must be 'iterate' or 'anderson', got {solver!r}")
            self.solver, self.m, self.beta = solver, int(m), float(beta)

        def _f(self, z, x):
            a = z @ self.W.T + x @ self.U.T
            return self.act(a + self.b if self.b is not None else a)

        def _anderson(self, x):
            """Anderson acceleration in the documented order (docs/implicit.md), per sample."""
            dt = self.W.dtype
            z = _torch.zeros(x.shape[0], self.W.shape[0], dtype=dt)
            beta = _torch.tensor(self.beta, dtype=dt)
            hist, it = [], 0

            def rowdot(u, v):
                acc = u[:, 0] * v[:, 0]
                for i in range(1, u.shape[1]):
                    acc = acc + u[:, i] * v[:, i]
                return acc

            while True:
                g = self._f(z, x)
                it += 1
                f = g - z
                if f.abs().max() <= self.tol or it >= self.max_iter:
                    return g, it
                hist = (hist + [(z, g, f)])[-(self.m + 1) :]
                d = [tuple(hist[j + 1][t] - hist[j][t] for t in range(3)) for j in range(len(hist) - 1)]
                m = len(d)
                H = [[rowdot(d[p][2], d[q][2]) for q in range(m)] for p in range(m)]
                r = [rowdot(d[p][2], f) for p in range(m)]
                bad = _torch.zeros(x.shape[0], dtype=_torch.bool)
                for c in range(m):
                    bad |= H[c][c] == 0
                    for i in range(c + 1, m):
                        lv = H[i][c] / H[c][c]
                        for j in range(c + 1, m):
                            H[i][j] = H[i][j] - lv * H[c][j]
                        r[i] = r[i] - lv * r[c]
                gam = [None] * m
                for i in reversed(range(m)):
                    acc = r[i]
                    for j in range(i + 1, m):
                        acc = acc - H[i][j] * gam[j]
                    gam[i] = acc / H[i][i]
                if m:
                    G = _torch.stack(gam, dim=1)
                    bad |= ~_torch.isfinite(G).all(dim=1)
                    G[bad] = 0
                gbar, zbar = g, z
                for j, (dz, dg, _) in enumerate(d):
                    gbar = gbar - dg * G[:, j : j + 1]
                    if self.beta != 1:
                        zbar = zbar - dz * G[:, j : j + 1]
                z = gbar if self.beta == 1 else gbar * beta + zbar * (1 - beta)

        def forward(self, x):
            self.last_lambda = None  # set again by this pass's backward, if there is one
            with _torch.no_grad():
                z = _torch.zeros(x.shape[0], self.W.shape[0], dtype=self.W.dtype)
                for k in range(self.max_iter if self.solver == "iterate" else 0):
                    new = self._f(z, x)
                    res = (new - z).abs().max()
                    z = new
                    self.iterations = k + 1
                    if res <= self.tol:
                        break
                if self.solver == "anderson":
                    z, self.iterations = self._anderson(x)
                a = z @ self.W.T + x @ self.U.T
                self.last_pre = a + self.b if self.b is not None else a
                self.last_z = z.detach()
            out = self._f(z.detach(), x)  # the layer's output; its gradient is replaced below
            if out.requires_grad:
                z0 = z.detach().requires_grad_()
                f0 = self._f(z0, x)  # a second application, only for the vector-Jacobian products

                def implicit(g):
                    lam = g
                    for _ in range(self.max_iter):
                        (vjp,) = _torch.autograd.grad(f0, z0, lam, retain_graph=True)
                        new = g + vjp
                        res = (new - lam).abs().max()
                        lam = new
                        if res <= self.tol:
                            break
                    self.last_lambda = lam.detach()
                    return lam

                out.register_hook(implicit)
            return out
else:  # pragma: no cover - without the torch extra
    DEQ = None
