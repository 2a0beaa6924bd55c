"""Compile capture filters to a classic BPF program whose accept value is the snap length.

"Local" is the VM's side: the kernel program reads each packet's direction (the ancillary
load skb->pkt_type, what libpcap's Linux `outbound`/`inbound` compile to) and matches local =
source on a packet the VM sends, local = destination on any other. On loopback the kernel
shows every packet twice, sent then received: the sent copy is dropped (libpcap does the
same in user space), so each loopback packet is matched once, as received.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

from capture_engine.attach import MAX_INSNS, Insn, too_large
from capture_engine.bpfmatch import Emitter, IrItem, ranges_test, v6_test
from capture_engine.filters import AddressSet, CaptureFilter, PortSet

WHOLE_PACKET = 262144  # tcpdump's default snap length
FILTER_READS = 128  # our programs read at most 14 + 60 (IPv4 options) + 4 bytes

LD_W, LD_H, LD_B = 0x20, 0x28, 0x30          # ld [k]
LD_H_IND, LDX_MSH = 0x48, 0xB1               # ldh [x + k]; ldx 4*([k]&0xf)
LD_IMM, LD_MEM, ST = 0x00, 0x60, 0x02        # ld #k; ld M[k]; st M[k]
RET_K, JA = 0x06, 0x05
JEQ, JGT, JGE, JSET = 0x15, 0x25, 0x35, 0x45
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
IPPROTO = {"TCP": 6, "UDP": 17}
IPV6_FRAGMENT = 44
# Ancillary loads (linux/filter.h): k = SKF_AD_OFF + field, read from the skb, not the packet.
SKF_AD_OFF, SKF_AD_PKTTYPE, SKF_AD_HATYPE = -0x1000, 4, 28
PACKET_OUTGOING, ARPHRD_LOOPBACK = 4, 772

# Offsets from the start of the Ethernet frame.
V4 = {"proto": 23, "src": 26, "dst": 30, "frag": 20, "ihl": 14, "sport": 14, "dport": 16}
V6 = {"proto": 20, "src": 22, "dst": 38, "sport": 54, "dport": 56, "frag_next": 54}


def assemble(ir: Sequence[IrItem]) -> list[Insn]:
    """Resolve labels; a conditional jump further than 255 becomes cond + `ja` trampolines."""
    far: set[int] = set()  # ir positions of jumps too far for a conditional's 8 bits
    while True:
        pos, pc = _layout(ir, far)
        grown = False
        for i, item in enumerate(ir):
            if item[0] == "jmp" and i not in far:
                if any(t is not None and pos[t] - (pc[i] + 1) > 255 for t in item[3:5]):
                    far.add(i)
                    grown = True
        if not grown:
            break
    out: list[Insn] = []
    for i, item in enumerate(ir):
        if item[0] == "op":
            out.append((item[1], 0, 0, item[2] & 0xFFFFFFFF))
        elif item[0] == "ja":
            out.append((JA, 0, 0, pos[item[1]] - (pc[i] + 1)))
        elif item[0] == "jmp" and i not in far:
            jt, jf = (0 if t is None else pos[t] - (pc[i] + 1) for t in item[3:5])
            out.append((item[1], jt, jf, item[2] & 0xFFFFFFFF))
        elif item[0] == "jmp":
            out.append((item[1], 0, 1, item[2] & 0xFFFFFFFF))
            for n, t in enumerate(item[3:5]):
                here = pc[i] + 1 + n
                out.append((JA, 0, 0, (pc[i] + 3 if t is None else pos[t]) - (here + 1)))
    return out


def _layout(ir: Sequence[IrItem], far: set[int]) -> tuple[dict[str, int], list[int]]:
    pos: dict[str, int] = {}
    pcs: list[int] = []
    pc = 0
    for i, item in enumerate(ir):
        pcs.append(pc)
        if item[0] == "label":
            pos[item[1]] = pc
        elif item[0] != "alias":
            pc += 3 if i in far else 1
    for item in ir:
        if item[0] == "alias":
            pos[item[1]] = pos[item[2]]
    return pos, pcs


# Scratch memory: each packet field the filters test is loaded once per family and stored.
P, Q, SPORT, DPORT, SRC, DST = 0, 1, 2, 3, 4, 8   # SRC/DST: 1 word (IPv4) or 4 (IPv6)
DIR = 12  # skb->pkt_type
NEAR_HALF = 120  # a half this long: its misses still reach past the other half (255)
NO_PORT = 0x10000  # stored as the ports of packets without them: matches no port range


@dataclass(frozen=True)
class _Needs:
    """What a family's prologue must load for its filters."""

    proto: bool
    upper: bool      # IPv6: the protocol after an optional fragment header (libpcap's ip6 proto)
    addresses: bool
    ports: bool


def _needs(filters: Sequence[CaptureFilter], version: int) -> _Needs:
    protocol = any(f.protocol in IPPROTO for f in filters)
    return _Needs(proto=protocol or any(f.has_ports for f in filters),
                  upper=version == 6 and any(f.protocol in IPPROTO and not f.has_ports
                                             for f in filters),
                  addresses=any(f.local_ip is not None or f.remote_ip is not None
                                for f in filters),
                  ports=any(f.has_ports for f in filters))


def _prologue(e: Emitter, version: int, needs: _Needs) -> None:
    """Protocol and addresses into scratch memory: inside every IPv4/IPv6 header."""
    table = V4 if version == 4 else V6
    if needs.proto:
        e.op(LD_B, table["proto"])
        e.op(ST, P)
        if needs.upper:
            stored = e.label()
            e.jump(JEQ, IPV6_FRAGMENT, None, stored)
            e.op(LD_B, V6["frag_next"])
            e.place(stored)
            e.op(ST, Q)
    if needs.addresses:
        count = 1 if version == 4 else 4
        for base, offset in ((SRC, table["src"]), (DST, table["dst"])):
            for word in range(count):
                e.op(LD_W, offset + 4 * word)
                e.op(ST, base + word)


def _load_ports(e: Emitter, version: int) -> None:
    """Ports of an unfragmented (or first-fragment) TCP or UDP packet, else NO_PORT.

    Emitted after the filters without ports, so a truncated packet cannot stop them."""
    load, none, done = e.label(), e.label(), e.label()
    e.op(LD_MEM, P)
    e.jump(JEQ, IPPROTO["TCP"], load, None)
    e.jump(JEQ, IPPROTO["UDP"], load, none)
    e.place(load)
    if version == 4:
        e.op(LD_H, V4["frag"])
        e.jump(JSET, 0x1FFF, none, None)  # ports exist only in a first fragment
        e.op(LDX_MSH, V4["ihl"])
    for slot, key in ((SPORT, "sport"), (DPORT, "dport")):
        e.op(LD_H_IND if version == 4 else LD_H, V4[key] if version == 4 else V6[key])
        e.op(ST, slot)
    e.goto(done)
    e.place(none)
    e.op(LD_IMM, NO_PORT)
    e.op(ST, SPORT)
    e.op(ST, DPORT)
    e.place(done)


def _protocol_test(e: Emitter, f: CaptureFilter, version: int, fail: str) -> None:
    if f.protocol not in IPPROTO:
        return  # Any: with ports, NO_PORT already excludes everything but TCP and UDP
    upper = version == 6 and not f.has_ports  # libpcap's `ip6 proto` skips a fragment header
    e.op(LD_MEM, Q if upper else P)
    e.jump(JEQ, IPPROTO[f.protocol], None, fail)


def _side_test(e: Emitter, field: Optional[AddressSet], version: int, slot: int,
               fail: str) -> None:
    if field is None:
        return
    ok = e.label()
    ranges = [(int(lo), int(hi)) for lo, hi in field.of_version(version)]
    if version == 4:
        ranges_test(e, slot, ranges, ok, fail)
    else:
        v6_test(e, slot, ranges, ok, fail)
    e.place(ok)


def _port_test(e: Emitter, field: Optional[PortSet], slot: int, fail: str) -> None:
    if field is not None:
        ok = e.label()
        ranges_test(e, slot, field.ranges, ok, fail)
        e.place(ok)


def _half(e: Emitter, f: CaptureFilter, version: int, local: int, remote: int,
          fail: str) -> None:
    """The filter's fields with `local` / `remote` the slots of the VM's / the peer's end."""
    ports = {SRC: SPORT, DST: DPORT}
    _side_test(e, f.local_ip, version, local, fail)
    _side_test(e, f.remote_ip, version, remote, fail)
    _port_test(e, f.local_port, ports[local], fail)
    _port_test(e, f.remote_port, ports[remote], fail)


def _filter(e: Emitter, f: CaptureFilter, version: int, accept: str, fail: str,
            directional: bool) -> None:
    _protocol_test(e, f, version, fail)
    if not f.has_endpoints:
        e.goto(accept)
        return
    outgoing, incoming = e.label(), e.label()
    if directional:  # sent by the VM: local = source; any other: local = destination
        e.op(LD_MEM, DIR)
        e.jump(JEQ, PACKET_OUTGOING, outgoing, incoming)
        missed = e.label()
    else:  # libpcap's user-space filter cannot read the direction: either way round
        missed = incoming
    e.place(outgoing)
    start = len(e.ir)
    _half(e, f, version, SRC, DST, missed)
    e.goto(accept)
    if directional and e.size_since(start) > NEAR_HALF:
        e.place(missed)  # the misses of a long half jump here, then once over the other
        e.goto(fail)
    elif directional:
        e.alias(missed, fail)
    e.place(incoming)
    _half(e, f, version, DST, SRC, fail)
    e.goto(accept)


def _family(e: Emitter, filters: Sequence[CaptureFilter], version: int, accept: str,
            reject: str, directional: bool) -> None:
    needs = _needs(filters, version)
    _prologue(e, version, needs)
    for f in [f for f in filters if not f.has_ports] + [f for f in filters if f.has_ports]:
        if f.has_ports and needs.ports:
            _load_ports(e, version)
            needs = replace(needs, ports=False)
        nxt = e.label()
        _filter(e, f, version, accept, nxt, directional)
        e.place(nxt)
    e.goto(reject)


def compile_filters(filters: Sequence[CaptureFilter], snaplen: int,
                    directional: bool = True, sent_by: Optional[bytes] = None) -> list[Insn]:
    """A program accepting matching packets with `snaplen` bytes (0 = whole packet).

    `directional=False`: without ancillary loads, matching local/remote either way round - a
    superset of the kernel program, for libpcap's user-space filter, which cannot read them.
    `sent_by` (a MAC address; a saved file holds no direction): a packet from it was sent by
    the VM, any other received - no ancillary load, so no loopback rule either.
    """
    accept_value = snaplen or WHOLE_PACKET
    directional = directional or sent_by is not None
    kernel = directional and sent_by is None
    if not filters or any(f.unconstrained for f in filters):
        everything = [(RET_K, 0, 0, accept_value)]
        return loopback_rule(everything) if kernel else everything
    e = Emitter()
    accept, reject = e.label(), e.label()
    if sent_by is not None and any(f.has_endpoints for f in filters):
        _direction_from_mac(e, sent_by)
    elif directional and any(f.has_endpoints for f in filters):
        e.op(LD_W, SKF_AD_OFF + SKF_AD_PKTTYPE)
        e.op(ST, DIR)
    families = [(version, ethertype, [f for f in filters if version in f.versions()])
                for version, ethertype in ((4, ETH_IPV4), (6, ETH_IPV6))]
    families = [family for family in families if family[2]]
    entry = {version: e.label() for version, _, _ in families}
    e.op(LD_H, 12)
    for n, (version, ethertype, _) in enumerate(families):
        e.jump(JEQ, ethertype, entry[version], reject if n == len(families) - 1 else None)
    for version, _, mine in families:
        e.place(entry[version])
        _family(e, mine, version, accept, reject, directional)
    e.place(accept)
    e.op(RET_K, accept_value)
    e.place(reject)
    e.op(RET_K, 0)
    program = assemble(e.ir)
    if kernel:
        program = loopback_rule(program)
    if len(program) > MAX_INSNS:
        raise too_large(len(program))
    return program


def _direction_from_mac(e: Emitter, mac: bytes) -> None:
    """M[DIR] = PACKET_OUTGOING when the Ethernet source is `mac`, else 0."""
    other, done = e.label(), e.label()
    e.op(LD_W, 6)
    e.jump(JEQ, int.from_bytes(mac[:4], "big"), None, other)
    e.op(LD_H, 10)
    e.jump(JEQ, int.from_bytes(mac[4:6], "big"), None, other)
    e.op(LD_IMM, PACKET_OUTGOING)
    e.goto(done)
    e.place(other)
    e.op(LD_IMM, 0)
    e.place(done)
    e.op(ST, DIR)


def loopback_rule(program: Sequence[Insn]) -> list[Insn]:
    """`program` behind a drop of the sent copy of a loopback packet (its received copy is
    the one kept, as libpcap does): the same on both backends, whatever the program."""
    return [(LD_W, 0, 0, (SKF_AD_OFF + SKF_AD_PKTTYPE) & 0xFFFFFFFF),
            (JEQ, 0, 3, PACKET_OUTGOING),
            (LD_W, 0, 0, (SKF_AD_OFF + SKF_AD_HATYPE) & 0xFFFFFFFF),
            (JEQ, 0, 1, ARPHRD_LOOPBACK),
            (RET_K, 0, 0, 0),
            *program]


def direction_rule(program: Sequence[Insn], direction: str) -> list[Insn]:
    """tcpdump -Q: `in` drops the packets the host sends (skb->pkt_type PACKET_OUTGOING),
    `out` keeps only those, `inout` keeps `program` as it is."""
    if direction == "inout":
        return list(program)
    sent = (0, 1) if direction == "in" else (1, 0)  # (jt, jf): where a sent packet goes
    return [(LD_W, 0, 0, (SKF_AD_OFF + SKF_AD_PKTTYPE) & 0xFFFFFFFF),
            (JEQ, *sent, PACKET_OUTGOING),
            (RET_K, 0, 0, 0),
            *program]


def render(program: Sequence[Insn]) -> str:
    """The program in `tcpdump -dd` notation, for debugging and the CLI."""
    return "\n".join("{ 0x%x, %d, %d, 0x%08x }," % insn for insn in program)
