"""A strict reader for the SMT-LIB2 fragment of the emptiness queries (docs/certificate.md).

Part of the independent checker: no solver, no decision code. It reads exactly the fragment that
the decision side writes (``decide/nra.py``) and turns the query into polynomial atoms with exact
rational coefficients, so that the checker can compare them with the tie polynomials it replays
itself. Anything outside the fragment is an error, never skipped:

- commands: ``set-info`` (any attribute), ``set-logic QF_NRA`` (at most once, before everything
  else but ``set-info``), ``declare-fun NAME () Real`` / ``declare-const NAME Real`` (each name
  once), ``assert``, and ``check-sat`` exactly once, as the last command. No push/pop, no other
  command, no second check-sat;
- formulas: ``(and F ...)`` and the chainable comparisons ``< > <= >= =`` of two or more terms (no
  ``not``, ``or``, ``let``, ``true``/``false``, ite, quantifiers);
- terms: declared variables, numerals and decimals (``7``, ``0.25``), ``(+ t t ...)``,
  ``(- t)``, ``(- t t ...)``, ``(* t t ...)`` and ``(/ t c ...)`` with constant non-zero divisors.

An atom ``(OP a b)`` is returned as (relation, a - b) with relation ">" (``>``; ``<`` is turned
into ``>`` of b - a), ">=" (likewise) or "="; a chain ``(< a b c)`` is the atoms a < b and b < c.
Polynomials are dicts {monomial: mpq}, a monomial a tuple of (variable index, exponent) pairs
sorted by index, the variables numbered in declaration order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gmpy2 import mpq


class SmtLibError(ValueError):
    """The text is not in the fragment (the message says where and why)."""


_TOKEN = re.compile(
    r"""\s+|;[^\n]*|(?P<par>[()])|(?P<str>"(?:[^"]|"")*")|(?P<kw>:[A-Za-z0-9~!@$%^&*_\-+=<>.?/]+)"""
    r"""|(?P<dec>(?:0|[1-9][0-9]*)\.[0-9]+)(?![A-Za-z0-9~!@$%^&*_\-+=<>.?/])"""
    r"""|(?P<num>0|[1-9][0-9]*)(?![A-Za-z0-9~!@$%^&*_\-+=<>.?/])"""
    r"""|(?P<sym>[A-Za-z~!@$%^&*_\-+=<>.?/][A-Za-z0-9~!@$%^&*_\-+=<>.?/]*)"""
)
_RESERVED = {"and", "or", "not", "let", "true", "false", "ite", "forall", "exists", "=>", "xor", "distinct", "<", ">", "<=", ">=", "=", "+", "-", "*", "/", "par", "_", "!", "as", "NUMERAL", "DECIMAL", "STRING"}
_FLIP = {"<": ">", "<=": ">=", ">": ">", ">=": ">=", "=": "="}


@dataclass
class Query:
    variables: list = field(default_factory=list)  # declared names, in order
    atoms: list = field(default_factory=list)  # [(relation, poly)]: relation ">", ">=" or "="
    logic: str | None = None


def _tokens(text):
    pos, out = 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SmtLibError(f"character {pos}: {text[pos:pos + 20]!r} is not a token of the fragment")
        pos = m.end()
        for kind in ("par", "str", "kw", "dec", "num", "sym"):
            if m.group(kind) is not None:
                out.append((kind, m.group(kind)))
                break
    return out


def _sexprs(tokens):
    stack, top = [], []
    for kind, tok in tokens:
        if kind == "par" and tok == "(":
            stack.append(top)
            top = []
        elif kind == "par":
            if not stack:
                raise SmtLibError("unbalanced ')'")
            done, top = top, stack.pop()
            top.append(done)
        else:
            top.append((kind, tok))
    if stack:
        raise SmtLibError("unbalanced '(': the text ends inside an expression")
    return top


def _show(e) -> str:
    if isinstance(e, tuple):
        return e[1]
    return "(" + " ".join(_show(x) for x in e) + ")"


# polynomials: {((var, exp), ...): mpq}


def _padd(a, b, s=1):
    out = dict(a)
    for m, c in b.items():
        v = out.get(m, mpq(0)) + s * c
        if v == 0:
            out.pop(m, None)
        else:
            out[m] = v
    return out


def _pmul(a, b):
    out: dict = {}
    for m1, c1 in a.items():
        for m2, c2 in b.items():
            e = dict(m1)
            for j, k in m2:
                e[j] = e.get(j, 0) + k
            m = tuple(sorted(e.items()))
            v = out.get(m, mpq(0)) + c1 * c2
            if v == 0:
                out.pop(m, None)
            else:
                out[m] = v
    return out


def _const(c):
    return {(): mpq(c)} if c != 0 else {}


class _Reader:
    def __init__(self):
        self.q = Query()
        self.index: dict = {}

    def term(self, e):
        if isinstance(e, tuple):
            kind, tok = e
            if kind == "num":
                return _const(mpq(int(tok)))
            if kind == "dec":
                whole, frac = tok.split(".")
                return _const(mpq(int(whole + frac), 10 ** len(frac)))
            if kind == "sym" and tok in self.index:
                return {((self.index[tok], 1),): mpq(1)}
            raise SmtLibError(f"{tok!r} is not a declared variable or a number")
        if not e or not isinstance(e[0], tuple) or e[0][0] != "sym":
            raise SmtLibError(f"{_show(e)} is not a term of the fragment")
        op, args = e[0][1], [self.term(a) for a in e[1:]]
        if op == "-" and len(args) == 1:
            return _padd({}, args[0], -1)
        if op in ("+", "-", "*", "/") and len(args) >= 2:
            acc = args[0]
            for a in args[1:]:
                if op == "+":
                    acc = _padd(acc, a)
                elif op == "-":
                    acc = _padd(acc, a, -1)
                elif op == "*":
                    acc = _pmul(acc, a)
                else:
                    if any(m != () for m in a) or not a:
                        raise SmtLibError(f"{_show(e)}: a divisor must be a non-zero constant")
                    acc = _pmul(acc, _const(1 / a[()]))
            return acc
        raise SmtLibError(f"{_show(e)}: {op!r} with {len(args)} argument(s) is not in the fragment")

    def formula(self, e):
        if isinstance(e, list) and e and e[0] == ("sym", "and") and len(e) >= 2:
            for f in e[1:]:
                self.formula(f)
            return
        if isinstance(e, list) and len(e) >= 3 and isinstance(e[0], tuple) and e[0][0] == "sym" and e[0][1] in _FLIP:
            op = e[0][1]
            ts = [self.term(a) for a in e[1:]]
            for a, b in zip(ts, ts[1:]):
                lo, hi = (b, a) if op in (">", ">=", "=") else (a, b)
                self.q.atoms.append((_FLIP[op], _padd(hi, lo, -1)))
            return
        raise SmtLibError(f"assert {_show(e)}: only 'and' of comparisons (< > <= >= =) is in the fragment")

    def declare(self, name):
        if name[0] != "sym" or name[1] in _RESERVED:
            raise SmtLibError(f"{name[1]!r} cannot be declared")
        if name[1] in self.index:
            raise SmtLibError(f"{name[1]!r} is declared twice")
        self.index[name[1]] = len(self.q.variables)
        self.q.variables.append(name[1])


def read(text: str) -> Query:
    """The query's declared variables and asserted atoms; SmtLibError outside the fragment."""
    r = _Reader()
    cmds = _sexprs(_tokens(text))
    seen_check = False
    for c in cmds:
        if seen_check:
            raise SmtLibError(f"{_show(c)} after (check-sat): check-sat must be the last command")
        if not isinstance(c, list) or not c or not isinstance(c[0], tuple) or c[0][0] != "sym":
            raise SmtLibError(f"{_show(c)} is not a command")
        name, args = c[0][1], c[1:]
        if name == "set-info" and 1 <= len(args) <= 2 and args[0][0] == "kw":
            continue
        if name == "set-logic" and len(args) == 1:
            if args[0] != ("sym", "QF_NRA"):
                raise SmtLibError(f"(set-logic {_show(args[0])}): the fragment is QF_NRA")
            if r.q.logic is not None or r.q.variables or r.q.atoms:
                raise SmtLibError("set-logic must come once, before the declarations and assertions")
            r.q.logic = "QF_NRA"
        elif name == "declare-fun" and len(args) == 3 and args[1] == [] and args[2] == ("sym", "Real"):
            r.declare(args[0])
        elif name == "declare-const" and len(args) == 2 and args[1] == ("sym", "Real"):
            r.declare(args[0])
        elif name == "assert" and len(args) == 1:
            r.formula(args[0])
        elif name == "check-sat" and not args:
            seen_check = True
        else:
            raise SmtLibError(f"{_show(c)}: the command is not in the fragment")
    if not seen_check:
        raise SmtLibError("the query has no (check-sat)")
    return r.q
