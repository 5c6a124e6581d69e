"""Surveys: how often does training meet kinks at 16/32/64 bits, and what are the events, exactly?

Bertoin et al. (ReLU'(0)) and Boustany (max-pool) at laptop scale, on scikit-learn's
``load_digits`` (shipped with scikit-learn, no download), with every event classified exactly.

Two copies of the backward pass are compared on each minibatch: mode A is PyTorch's native one
(ReLU'(0) = 0, max-pool gradient to the first maximal entry) and mode B the other proxy
(ReLU'(0) = 1, max-pool gradient split evenly among the tied maxima, a custom autograd Function).
An *event* is a minibatch where the two backprops differ (the bifurcation zone).

- Protocol 1 (Bertoin et al.'s volume estimate): N random initialisations, one epoch of minibatches
  without updating; an initialisation is *in the zone* when some minibatch is an event.
- Protocol 2: N random initialisations trained with plain SGD (mode A gradients, ``lr``,
  ``epochs``); every event along the way is recorded with the parameters of that step. Its
  J_beta variant (``protocol2``, Boustany's experiment) trains the CNN with the max-pool backward
  J_beta = beta*J_split + (1-beta)*J_first for several beta and reports the training accuracy.

Detection: forward hooks on every ReLU / MaxPool2d module record the float ties of the PyTorch run
(a ReLU input exactly 0, a pooling window whose maximum is attained twice or more). The two modes
only differ at such ties, so mode B is run only on minibatches where the hooks saw a tie, and the
event is confirmed by comparing the two backprops bit for bit (``torch.equal``). A minibatch with a
float tie whose backward signal is zero is counted in ``tie_batches`` but is not an event.

Classification: the event's network file (``kinkcheck.torch.from_torch`` of the parameters of that
step and the minibatch) goes through kinkcheck's exact run (float64 filter with a rigorous bound,
exact rationals where it cannot decide) and its decision procedure (``differentiability.decide``,
what ``kinkcheck.verify`` uses; ``full_verify`` runs the whole ``kinkcheck.verify``, which adds
kinkcheck's own spec-order float run). Each float tie PyTorch saw is looked up among the exact
run's real ties by (layer, sample, unit): the event is a *real tie* when one of them is a real tie,
*float-only* otherwise. The verdicts (differentiable, AD the gradient, AD in Clarke) are kinkcheck's,
``None`` where undecided or past ``verdict_budget_s`` (with cross-entropy, equalities between
gradients are transcendental and often undecided; ``loss="mse"`` keeps everything rational).
PyTorch's summation order differs from the spec's, so the float tie is PyTorch's observation; the
exact side does not depend on order.

Runs are independent and seeded (their own ``torch.Generator``, one torch thread each): the result
is the same with the serial, process-pool or Dask executor. With an output folder, each finished
run is written to ``runs/<key>.json`` atomically and a re-invocation skips the finished runs.

Modules, in the order a run uses them: ``config`` (``SurveyConfig``, the grid of jobs), ``models``
(the torch side: models, data, the mode-B proxies, the tie-recording hooks), ``run`` (one
initialisation: ``_simulate`` and ``run_one``), ``classification`` (``classify``: one event, exactly),
``execute`` (``survey``: executors, resume, progress), ``report`` (``SurveyResult``, ``write``: the
summary, results and plots), ``zone`` (the zone picture) and ``protocol2`` (the J_beta training
experiment, on its own).

May import: ``kinkcheck.encodings``, ``kinkcheck.decide``, ``kinkcheck.api``, ``kinkcheck.interop``,
``kinkcheck.files``.
"""

from .classification import classify
from .config import SurveyConfig
from .execute import survey
from .report import SurveyResult, write

__all__ = ["SurveyConfig", "SurveyResult", "survey", "write", "classify"]
