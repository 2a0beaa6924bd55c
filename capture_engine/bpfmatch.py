"""BPF value tests on scratch memory: port and IPv4 ranges, IPv6 address tries and ranges.

Every test reads packet fields the program stored once in scratch memory (`ld M[k]` is one
instruction; a packet load is ~14 once the kernel converts the program to eBPF, and the kernel
charges the converted size against net.core.optmem_max).
"""
from __future__ import annotations

import itertools
from typing import Literal, Optional, Sequence, Union

LD_MEM, JA = 0x60, 0x05
JEQ, JGT, JGE = 0x15, 0x25, 0x35
WORD = 0xFFFFFFFF
Words = tuple[int, int, int, int]
# The emitter's instructions before labels are resolved (bpf.assemble), by their first item.
Op = tuple[Literal["op"], int, int]                                    # code, k
Jump = tuple[Literal["jmp"], int, int, Optional[str], Optional[str]]   # code, k, jt, jf
Goto = tuple[Literal["ja"], str]                                       # target
Place = tuple[Literal["label"], str]                                   # name
Alias = tuple[Literal["alias"], str, str]                              # name, target
IrItem = Union[Op, Jump, Goto, Place, Alias]


class Emitter:
    """Builds an instruction list with symbolic forward labels (None = the next instruction)."""

    def __init__(self) -> None:
        self.ir: list[IrItem] = []
        self._ids = itertools.count()

    def label(self) -> str:
        return f"L{next(self._ids)}"

    def place(self, name: str) -> None:
        self.ir.append(("label", name))

    def op(self, code: int, k: int = 0) -> None:
        self.ir.append(("op", code, k))

    def jump(self, code: int, k: int, jt: Optional[str], jf: Optional[str]) -> None:
        self.ir.append(("jmp", code, k, jt, jf))

    def goto(self, target: str) -> None:
        self.ir.append(("ja", target))

    def alias(self, name: str, target: str) -> None:
        """`name` means wherever `target` is placed (before or after this point)."""
        self.ir.append(("alias", name, target))

    def size_since(self, start: int) -> int:
        """Instructions emitted since ir position `start` (before any far-jump trampoline)."""
        return sum(1 for item in self.ir[start:] if item[0] in ("op", "jmp", "ja"))


def merged(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with overlapping and adjacent ones joined (80;81;82 -> 80-82)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return out


def ranges_test(e: Emitter, slot: int, ranges: Sequence[tuple[int, int]], ok: str,
                fail: str) -> None:
    """M[slot] in one of the inclusive ranges -> `ok`, else `fail`."""
    e.op(LD_MEM, slot)
    spans = merged(ranges)
    for n, (lo, hi) in enumerate(spans):
        nxt = fail if n == len(spans) - 1 else e.label()
        if lo == hi:
            e.jump(JEQ, lo, ok, nxt)
        else:
            e.jump(JGE, lo, None, nxt)
            e.jump(JGT, hi, nxt, ok)
        if nxt != fail:
            e.place(nxt)


def words(value: int) -> Words:
    return (value >> 96 & WORD, value >> 64 & WORD, value >> 32 & WORD, value & WORD)


def _trie(e: Emitter, members: Sequence[Words], level: int, slot: int, ok: str,
          fail: str) -> None:
    """One word per level, loaded once per trie node: a shared prefix is compared once."""
    e.op(LD_MEM, slot + level)
    groups = [(value, list(group)) for value, group in
              itertools.groupby(members, key=lambda w: w[level])]
    for n, (value, group) in enumerate(groups):
        nxt = fail if n == len(groups) - 1 else e.label()
        if level == 3:
            e.jump(JEQ, value, ok, nxt)
        else:
            e.jump(JEQ, value, None, nxt)
            _trie(e, group, level + 1, slot, ok, fail)
        if nxt != fail:
            e.place(nxt)


def _at_least(e: Emitter, lo: Words, j: int, slot: int, ok: str, fail: str) -> None:
    """Words j..3 of the address >= lo's, lexicographically."""
    while j < 4 and any(lo[j:]):
        e.op(LD_MEM, slot + j)
        if not any(lo[j + 1:]):
            e.jump(JGE, lo[j], ok, fail)
            return
        e.jump(JGT, lo[j], ok, None)
        e.jump(JEQ, lo[j], None, fail)
        j += 1
    e.goto(ok)


def _at_most(e: Emitter, hi: Words, j: int, slot: int, ok: str, fail: str) -> None:
    """Words j..3 of the address <= hi's, lexicographically."""
    while j < 4 and any(w != WORD for w in hi[j:]):
        e.op(LD_MEM, slot + j)
        if all(w == WORD for w in hi[j + 1:]):
            e.jump(JGT, hi[j], fail, ok)
            return
        e.jump(JGT, hi[j], fail, None)
        e.jump(JEQ, hi[j], None, ok)
        j += 1
    e.goto(ok)


def _v6_range(e: Emitter, lo: Words, hi: Words, slot: int, ok: str, fail: str) -> None:
    """lo <= address <= hi over four words: equal leading words, then one split word."""
    k = next(i for i in range(4) if lo[i] != hi[i])
    for i in range(k):
        e.op(LD_MEM, slot + i)
        e.jump(JEQ, lo[i], None, fail)
    at_lo, at_hi = e.label(), e.label()
    e.op(LD_MEM, slot + k)
    e.jump(JEQ, lo[k], at_lo, None)
    e.jump(JGE, lo[k], None, fail)      # below lo's word
    e.jump(JGE, hi[k], None, ok)        # strictly between the two words
    e.jump(JEQ, hi[k], at_hi, fail)     # above hi's word -> fail
    e.place(at_lo)
    _at_least(e, lo, k + 1, slot, ok, fail)
    e.place(at_hi)
    _at_most(e, hi, k + 1, slot, ok, fail)


def v6_test(e: Emitter, slot: int, ranges: Sequence[tuple[int, int]], ok: str,
            fail: str) -> None:
    """The address in M[slot..slot+3] is one of `ranges` (128-bit ints) -> ok, else fail."""
    spans = merged(ranges)
    singles = [words(lo) for lo, hi in spans if lo == hi]
    wide = [(words(lo), words(hi)) for lo, hi in spans if lo != hi]
    for n, (lo, hi) in enumerate(wide):
        nxt = fail if n == len(wide) - 1 and not singles else e.label()
        _v6_range(e, lo, hi, slot, ok, nxt)
        if nxt != fail:
            e.place(nxt)
    if singles:
        _trie(e, sorted(singles), 0, slot, ok, fail)
