"""Other frameworks: PyTorch and ONNX models in and out, and their kink conventions measured.

``torch`` (public as ``kinkcheck.torch``: ``from_torch``, ``check``, import of TorchScript /
torch.export archives, export to TorchScript / torch.export / ONNX; the code is in ``torch_modules``,
``torch_import``, ``torch_check``, ``torch_archive`` and ``torch_export``), ``onnx`` (ONNX chain graphs),
``probe`` and ``jax_probe`` (measure what the installed torch / JAX autograd returns at every kink).

May import: ``kinkcheck.encodings``, ``kinkcheck.decide``, ``kinkcheck.certify``, ``kinkcheck.api``,
``kinkcheck.files``.
"""
