"""kinkcheck.encodings: the network model, the activation library and the two semantics.

Data flows one way: file -> network model -> semantics -> verdicts (in ``kinkcheck``).
"""
