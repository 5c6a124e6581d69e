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
"""

from __future__ import annotations

from .torch_modules import _torch

if _torch is not None:
    _nn = _torch.nn

    class DEQ(_nn.Module):
        """z* = activation(z* W^T + x U^T + b), differentiated implicitly (see the module docstring)."""

        def __init__(self, W, U, b=None, activation=None, max_iter: int = 100, tol: float = 0.0):
            super().__init__()
            self.W = _nn.Parameter(_torch.as_tensor(W))
            self.U = _nn.Parameter(_torch.as_tensor(U))
            self.b = _nn.Parameter(_torch.as_tensor(b)) if b is not None else None
            self.act = activation if activation is not None else _nn.ReLU()
            self.max_iter = int(max_iter)
            self.tol = float(tol)
            self.iterations = 0

        def _f(self, z, x):
            a = z @ self.W.T + x @ self.U.T
            return self.act(a + self.b if self.b is not None else a)

        def forward(self, x):
            with _torch.no_grad():
                z = _torch.zeros(x.shape[0], self.W.shape[0], dtype=self.W.dtype)
                for k in range(self.max_iter):
                    new = self._f(z, x)
                    res = (new - z).abs().max()
                    z = new
                    if res <= self.tol:
                        break
                self.iterations = k + 1
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
                    return lam

                out.register_hook(implicit)
            return out
else:  # pragma: no cover - without the torch extra
    DEQ = None
