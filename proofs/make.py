"""Regenerate the committed certificates of proofs/examples/*.json and the table in proofs/README.md.

    python proofs/make.py           # rewrite certificates/ and README.md
    python proofs/make.py --check   # exit 1 if a committed certificate's claims or the table are stale

The claims (verdicts, AD output, gradient, ties) must match exactly; the evidence (witness
directions, multipliers) may differ between Z3 versions and is validated instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import kinkcheck  # noqa: E402
from kinkcheck.files import write_atomic  # noqa: E402

YN = {True: "yes", False: "**no**", None: "undecided"}


def rows():
    for path in sorted((HERE / "examples").glob("*.json")):
        report = kinkcheck.verify(str(path.relative_to(HERE.parent)), values=True)
        yield path, report, report.certificate()


def table(items) -> str:
    out = [
        "| example | real ties | differentiable | AD = gradient | AD in Clarke | exact AD | gradient | machine AD | compensation | choice-sensitive |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path, r, _ in items:
        out.append(
            f"| [{path.stem}](examples/{path.name}) | {len(r.real_ties)} | {YN[r.differentiable]} | {YN[r.ad_correct]} | "
            f"{YN[r.ad_in_clarke]} | ({', '.join(r.ad)}) | {('(' + ', '.join(r.gradient) + ')') if r.gradient else '-'} | "
            f"({', '.join(r.machine_ad)}) | {'yes' if r.compensation else 'no'} | {'yes' if r.choice_sensitive else 'no'} |"
        )
    return "\n".join(out) + "\n"


README_HEAD = """# proofs

The papers' examples (Lee-Park-Aiken ICML 2023, Park-Chun-Lee ICLR 2024, Boustany TMLR 2024, Bolte
et al. NeurIPS 2021), kinkcheck's own (the max-pool LP condition, a tie under cross-entropy,
compensating ties in two layers, a choice sensitivity that only a mixed assignment of one-sided
choices shows, tie regions that are curved, mirrored or cut out by dependent functionals -
docs/clarke.md), fixed-point (DEQ) layers and a value-iteration block (docs/implicit.md) as network files (`examples/`) with
their committed certificates (`certificates/`). `kinkcheck check certificates/NAME.cert.json`
re-validates one with exact arithmetic; the test suite re-checks all of them and regenerates them
(`python proofs/make.py --check`). Regenerate with `python proofs/make.py`.

"""


def main(argv) -> int:
    check = "--check" in argv
    items = list(rows())
    stale = []
    for path, _, cert in items:
        target = HERE / "certificates" / (path.stem + ".cert.json")
        if check:
            old = json.loads(target.read_text()) if target.exists() else None
            if old is None or old["claims"] != json.loads(json.dumps(cert["claims"])) or old["network"] != cert["network"]:
                stale.append(target.name)
        else:
            write_atomic(target, cert)
    text = README_HEAD + table(items)
    readme = HERE / "README.md"
    if check:
        if not readme.exists() or readme.read_text() != text:
            stale.append("README.md")
    else:
        readme.write_text(text)
    if stale:
        print("stale: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
