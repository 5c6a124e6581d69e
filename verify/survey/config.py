"""What a survey is: its settings (``SurveyConfig``: protocol, architecture, grid of widths /
depths / dtypes, seeds, budgets), their validation, the grid of jobs and their keys.

No torch here: the configuration loads and validates without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..encodings.errors import InputError

DTYPES = ("float16", "bfloat16", "float32", "float64")
ARCHS = ("mlp", "cnn")
LOSSES = ("cross_entropy", "mse")
EXECUTORS = ("local", "dask")
MAX_TIES_KEPT = 20  # float ties stored per event (all are used for the classification)
CONFIG_FILE = "config.json"
FORMAT = 1



@dataclass
class SurveyConfig:
    """One survey. ``widths`` are hidden widths (MLP) or channels (CNN); ``depths`` hidden layers
    (MLP) or conv layers (CNN: Conv2d(1,c,3) -> MaxPool2d(2) -> ReLU, then (Conv2d(c,c,3,pad 1) ->
    ReLU) x (depth-1), -> Flatten -> Linear(9c, 10)). ``max_batches`` caps minibatches per epoch,
    ``max_classified`` the events classified exactly per run (None: all)."""

    protocol: int = 1
    arch: str = "mlp"
    widths: tuple = (16, 64)
    depths: tuple = (1,)
    dtypes: tuple = ("float16", "float32", "float64")
    inits: int = 8
    batch: int = 32
    seed: int = 0
    max_batches: int | None = None
    max_classified: int | None = 5
    lr: float = 0.1
    epochs: int = 3
    loss: str = "cross_entropy"
    inputs: str | None = None  # "pixels" | "standardized"; None: pixels (MLP), standardized (CNN)
    verdict_budget_s: float | None = 60.0  # per event, for the decision procedure (None: none)
    full_verify: bool = False  # classify with the whole kinkcheck.verify (adds spec-order choice sensitivity)

    @classmethod
    def quick(cls, protocol: int = 1, arch: str = "mlp") -> SurveyConfig:
        """About a minute on two cores (two worker processes), every event classified; the
        verdicts of an event get 5 s (see docs/survey.md for measured times)."""
        kw = {"protocol": protocol, "arch": arch, "inits": 3, "max_classified": None, "verdict_budget_s": 5.0}
        if arch == "cnn":
            if protocol == 2:
                return cls(**kw, widths=(4, 16), depths=(1,), epochs=2)
            return cls(**kw, widths=(4, 8, 16), depths=(1, 2))
        if protocol == 2:
            return cls(**kw, widths=(64, 256), depths=(1, 2), epochs=2)
        return cls(**kw, widths=(64, 256), depths=(1, 2, 3))

    def __post_init__(self):
        for k in ("widths", "depths", "dtypes"):
            v = getattr(self, k)
            setattr(self, k, tuple(v) if isinstance(v, (list, tuple)) else (v,))

    def validate(self) -> SurveyConfig:
        def pos_int(name, v, lo=1):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise InputError(f"--{name.replace('_', '-')}: expected an integer >= {lo}, got {v!r}")

        if self.protocol not in (1, 2):
            raise InputError(f"--protocol: expected 1 or 2, got {self.protocol!r}")
        if self.arch not in ARCHS:
            raise InputError(f"--arch: expected one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.inputs not in (None, "pixels", "standardized"):
            raise InputError(f"--inputs: expected pixels or standardized, got {self.inputs!r}")
        if self.loss not in LOSSES:
            raise InputError(f"--loss: expected one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not self.widths or not self.depths or not self.dtypes:
            raise InputError("--widths, --depths and --dtypes need at least one value each")
        for w in self.widths:
            pos_int("widths", w)
        for d in self.depths:
            pos_int("depths", d)
        for dt in self.dtypes:
            if dt not in DTYPES:
                raise InputError(f"--dtypes: {dt!r} is not one of {', '.join(DTYPES)}")
        for name in ("inits", "batch", "epochs"):
            pos_int(name, getattr(self, name))
        pos_int("seed", self.seed, 0)
        if self.max_batches is not None:
            pos_int("max_batches", self.max_batches)
        if self.max_classified is not None:
            pos_int("max_classified", self.max_classified, 0)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise InputError(f"--lr: expected a finite number > 0, got {self.lr!r}")
        b = self.verdict_budget_s
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0):
            raise InputError(f"--verdict-budget: expected a finite number of seconds >= 0, got {b!r}")
        if len(set(self.widths)) != len(self.widths) or len(set(self.depths)) != len(self.depths) or len(set(self.dtypes)) != len(self.dtypes):
            raise InputError("--widths, --depths and --dtypes must not repeat a value")
        return self

    def run_params(self) -> dict:
        """What one run's result depends on besides its grid point (compared when resuming)."""
        keys = ["protocol", "arch", "loss", "batch", "seed", "max_batches", "max_classified", "verdict_budget_s", "full_verify"]
        if self.protocol == 2:
            keys += ["lr", "epochs"]
        return {"survey_format": FORMAT, **{k: getattr(self, k) for k in keys}, "inputs": self.inputs or _default_inputs(self.arch)}

    def jobs(self) -> list:
        return [(dt, d, w, i) for dt in self.dtypes for d in self.depths for w in self.widths for i in range(self.inits)]


def job_key(job) -> str:
    dt, d, w, i = job
    return f"{dt}-d{d}-w{w}-i{i}"


def _config_from_dict(d: dict) -> SurveyConfig:
    names = SurveyConfig.__dataclass_fields__
    return SurveyConfig(**{k: v for k, v in d.items() if k in names})



def _default_inputs(arch: str) -> str:
    return "standardized" if arch == "cnn" else "pixels"
