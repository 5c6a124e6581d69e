"""Certificates: the evidence behind every yes and no, and the independent checker.

``certificate`` builds the JSON document from a report; ``checker`` re-validates one with exact
arithmetic of its own (gmpy2, mpfr enclosures), trusting nothing that decided the verdicts.

May import: ``kinkcheck.encodings`` and ``kinkcheck.decide`` (``certificate`` only). The checker
imports neither Z3 nor ``kinkcheck.decide`` nor the network program: only the loader, the formats
and the errors of ``kinkcheck.encodings`` (``tests/test_layout.py``). Nothing is imported here, so
``import kinkcheck.certify.checker`` stays light.
"""
