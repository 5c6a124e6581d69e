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
    data: str | None = None  # a user's data set (.npz with X [N, D...], y [N] labels 0..9; MLP only); None: load_digits

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
        if self.data is not None:
            if self.arch != "mlp":
                raise InputError(f"--data: only the MLP reads a data set (its input width is the file's), not --arch {self.arch}")
            read_data(self.data)  # one-line error for a bad file, before any run starts
        if len(set(self.widths)) != len(self.widths) or len(set(self.depths)) != len(self.depths) or len(set(self.dtypes)) != len(self.dtypes):
            raise InputError("--widths, --depths and --dtypes must not repeat a value")
        return self

    def run_params(self) -> dict:
        """What one run's result depends on besides its grid point (compared when resuming)."""
        keys = ["protocol", "arch", "loss", "batch", "seed", "max_batches", "max_classified", "verdict_budget_s", "full_verify"]
        if self.protocol == 2:
            keys += ["lr", "epochs"]
        out = {"survey_format": FORMAT, **{k: getattr(self, k) for k in keys}, "inputs": self.inputs or _default_inputs(self.arch)}
        if self.data is not None:  # runs are reused only on the same bytes
            out["data_sha256"] = read_data(self.data)[2]
        return out

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


N_CLASSES = 10  # the models' output width (load_digits and MNIST)
_READ: dict = {}


def read_data(path: str):
    """A user's data set for ``--data``: an .npz with arrays ``X`` (N samples, any trailing shape,
    flattened to [N, D]; finite real numbers) and ``y`` (N integer labels in 0..9). Returns
    (X float64 [N, D], y int64 [N], sha256 of the file). Bad input raises a one-line InputError
    naming the file, the array and the first bad index."""
    import hashlib
    import os
    import zipfile

    import numpy as np

    key = os.path.abspath(path)
    try:
        st = os.stat(key)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the data set: {exc.strerror or exc}") from None
    hit = _READ.get(key)
    if hit is not None and hit[0] == (st.st_size, st.st_mtime_ns):
        return hit[1]
    try:
        with open(key, "rb") as fh:
            raw = fh.read()
        import io

        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            missing = [k for k in ("X", "y") if k not in z.files]
            if missing:
                raise InputError(f"{path}: the data set needs arrays X and y; missing {', '.join(missing)} (has {', '.join(z.files) or 'none'})")
            X, y = z["X"], z["y"]
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npz data set: {exc}") from None
    if X.ndim < 2 or X.shape[0] < 1 or int(np.prod(X.shape[1:])) < 1:
        raise InputError(f"{path}: X: expected shape [N, D] (or [N, H, W], ...) with N, D >= 1, got {list(X.shape)}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise InputError(f"{path}: y: expected shape [{X.shape[0]}] (one label per row of X), got {list(y.shape)}")
    if X.dtype.kind not in "biuf":
        raise InputError(f"{path}: X: expected real numbers, got dtype {X.dtype}")
    Xf = X.reshape(X.shape[0], -1).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(Xf).all(axis=1))
    if bad.size:
        j = int(np.flatnonzero(~np.isfinite(Xf[bad[0]]))[0])
        raise InputError(f"{path}: X[{int(bad[0])}, {j}]: not finite ({Xf[bad[0], j]!r})")
    if y.dtype.kind not in "biu":
        if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
            y = y.astype(np.int64)
        else:
            raise InputError(f"{path}: y: expected integer labels 0..{N_CLASSES - 1}, got dtype {y.dtype}")
    yi = y.astype(np.int64)
    out_of_range = np.flatnonzero((yi < 0) | (yi >= N_CLASSES))
    if out_of_range.size:
        i = int(out_of_range[0])
        raise InputError(f"{path}: y[{i}]: label {int(yi[i])} is outside 0..{N_CLASSES - 1}")
    res = (Xf, yi, hashlib.sha256(raw).hexdigest())
    _READ[key] = ((st.st_size, st.st_mtime_ns), res)
    return res
