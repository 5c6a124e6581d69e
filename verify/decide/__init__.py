"""The questions at one parameter point, answered exactly.

Which units tie on a kink over the reals and in the float run (``ties``), whether another proxy
choice changes the float gradient (``choice``), and whether f is differentiable, whether the AD
output is the gradient and whether it is a Clarke subderivative (``differentiability``, over the
cell enumeration ``cells``, the one-layer ``hinge`` decomposition, the papers' sufficient conditions
``theorems`` and exact ``linalg``).

May import: ``kinkcheck.encodings`` only (and itself).
"""
