"""``kinkcheck verify NET --report out.html``: the page is parsed (html.parser) and, where Debian's
chromium is installed, loaded in a real headless browser. Expected picture counts are derived by
hand from IEEE arithmetic, not read off the output."""

from __future__ import annotations

import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import kinkcheck
from kinkcheck.htmlreport import decimal, render

EXAMPLES = Path(__file__).resolve().parent.parent / "proofs" / "examples"


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.rects = [], [], []
        self.links = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "rect":
            self.rects.append(a)
        if tag in ("script", "link", "img", "iframe"):
            self.links.append((tag, a))

    def handle_data(self, data):
        self.text.append(data)


def parse(text: str) -> Page:
    p = Page()
    p.feed(text)
    p.close()
    return p


def _cells(p: Page):
    red = sum(1 for r in p.rects if r.get("fill") == "#d62828")
    blue = sum(1 for r in p.rects if r.get("stroke") == "#1d4ed8")
    return red, blue


def test_relu_minus_relu_page():
    """f(w) = relu(w) - relu(-w) at w = 0 (float32): both units tie exactly and in float. Along w's
    ulps (subnormal steps around 0, w*1 and w*-1 exact) the argument is zero only at w itself, in
    both semantics: one red and one blue cell per unit, two units."""
    r = kinkcheck.verify(str(EXAMPLES / "relu_minus_relu.json"))
    page = render(r, certificate=r.certificate())
    p = parse(page)
    text = " ".join(p.text)
    assert p.links == []  # self-contained: no scripts, styles or images from elsewhere
    assert "f differentiable at w" in text and "AD output is the gradient" in text
    assert "Real ties (exact run) (2)" in text and "Float ties (machine run) (2)" in text
    assert _cells(p) == (2, 2)
    assert p.tags.count("svg") == 2
    assert "sha256:" in text  # certificate summary


def test_rounding_moves_the_kink_in_the_picture():
    """HardSigmoid(3 + w) + HardSigmoid(-3 + w) at w = 0 in float32: the args 3 + w and -3 + w hit
    the kinks +-3 exactly only at w = 0, but 3 + k * 2^-149 rounds to 3 for every k in [-10, 10]:
    the whole 21-cell strip is red in both pictures, blue only at w."""
    r = kinkcheck.verify(str(EXAMPLES / "hardsigmoid_shared_bias.json"))
    p = parse(render(r))
    assert _cells(p) == (2 * 21, 2)


def test_decimal_beside_exact_values():
    assert decimal("1/3", 6) == "0.333333"
    assert decimal("-5/2") == "-2.5"
    assert decimal("0") == "0"
    assert decimal("[0.1, 0.2]") == ""
    r = kinkcheck.verify(str(EXAMPLES / "two_layer_pairs.json"))
    page = render(r)
    assert "&asymp;" in page or all("/" not in (t["exact"] or "") for t in r.real_ties)


def test_cli_writes_the_page_atomically(tmp_path):
    out = tmp_path / "r.html"
    cmd = [sys.executable, "-c", "from kinkcheck.cli import main; main()", "verify", str(EXAMPLES / "maxpool_u_b.json"), "--report", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1, res.stderr  # a finding (AD not in Clarke)
    p = parse(out.read_text())
    assert "Verdicts" in " ".join(p.text) and "maxpool" in " ".join(p.text)
    bad = subprocess.run([*cmd[:-1], str(tmp_path / "no" / "such" / "dir.html")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and not (tmp_path / "no").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_page_in_a_real_headless_browser(tmp_path):
    r = kinkcheck.verify(str(EXAMPLES / "relu_minus_relu.json"))
    f = tmp_path / "r.html"
    f.write_text(render(r), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", f.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    p = parse(dom.stdout)  # the DOM as the browser built it
    assert p.tags.count("svg") == 2 and _cells(p) == (2, 2)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1000,1400", f.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fixed_point_section():
    r = kinkcheck.verify(str(EXAMPLES / "deq_singular_vertex.json"))
    text = " ".join(parse(render(r)).text)
    assert "Fixed-point layers" in text and "singular element (2 vertices)" in text
