"""-r on pcapng inputs a hostile reviewer builds: byte order, repeated interface names, a
truncated last block, absurdly many interface blocks."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from typing import List, Tuple

from tests.capture_engine.conftest import ROOT
from tests.hunt4 import pcapng_craft as ng

CLI = [sys.executable, "-m", "capture_engine"]


def _cli(args: List[str], cwd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ROOT})


def _tshark(path: str) -> List[Tuple[str, str]]:
    """(interface id, epoch seconds) of each packet, as tshark reads the file."""
    done = subprocess.run(["tshark", "-r", path, "-T", "fields", "-e", "frame.interface_id",
                           "-e", "frame.time_epoch"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return [tuple(line.split("\t")) for line in done.stdout.decode().splitlines()]


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as out:
        out.write(data)
    return path


def test_big_endian_pcapng_is_read(tmp_path):
    """A big-endian pcapng (what a big-endian host writes) has its packets read, not skipped
    as blocks of unknown type."""
    source = _write(str(tmp_path / "be.pcapng"),
                    ng.sections(">", [["eth0", "eth1"]]))
    assert len(_tshark(source)) == 2
    out = str(tmp_path / "out.pcapng")
    done = _cli(["-r", source, "-w", out, "--pcapng"], str(tmp_path))
    assert done.returncode == 0, done.stderr.decode()
    assert _tshark(out) == _tshark(source), (_tshark(out), done.stdout.decode())


def test_pcapng_output_keeps_interface_numbers_of_repeated_names(tmp_path):
    """Two sections that each name their interface eth0, and unnamed interfaces: each packet
    keeps its own interface's number, not the last interface of that name."""
    source = _write(str(tmp_path / "dup.pcapng"),
                    ng.sections("<", [["eth0", "", ""], ["eth0", ""]]))
    out = str(tmp_path / "out.pcapng")
    done = _cli(["-r", source, "-w", out, "--pcapng"], str(tmp_path))
    assert done.returncode == 0, done.stderr.decode()
    want = [("0", "1.000000000"), ("1", "2.000000000"), ("2", "3.000000000"),
            ("3", "4.000000000"), ("4", "5.000000000")]
    assert _tshark(out) == want, _tshark(out)


def test_truncated_block_after_the_last_packet_is_reported(tmp_path):
    """A file cut inside a block -r does not use (a statistics block) is truncated too, as
    tcpdump says; the packet before it is kept."""
    good = ng.sections("<", [["eth0"]])
    statistics = struct.pack("<III", 5, 64, 0) + bytes(52)
    source = _write(str(tmp_path / "cut.pcapng"), good + statistics[:30])
    out = str(tmp_path / "out.pcap")
    done = _cli(["-r", source, "-w", out], str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 1 and "error 132" in err and "truncated" in err, err
    assert os.path.getsize(out) == 24 + 16 + len(ng.FRAME)


def test_absurdly_many_interface_blocks_are_refused(tmp_path):
    """Memory grows with every interface block (and each output file would repeat them all):
    a file declaring more than pcap's 16-bit interface ids can number is a coded error, not
    gigabytes of memory."""
    body = ng.interface("<") * (65536 + 1)
    source = _write(str(tmp_path / "many.pcapng"),
                    ng.section("<") + body + ng.packet("<", 0, 1))
    done = _cli(["-r", source], str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 1 and "error 132" in err and "interface" in err, err
    assert "Traceback" not in err, err


def test_an_interface_name_that_grows_past_an_option_is_cut(tmp_path):
    """A 30,000-byte if_name of bytes that are not UTF-8: read as U+FFFD each (3 bytes), it
    no longer fits a pcapng option's 16-bit length; the output keeps what fits, no struct
    error."""
    raw = b"\xff" * 30000
    option = struct.pack("<HH", 2, len(raw)) + raw + struct.pack("<HH", 0, 0)
    idb = struct.pack("<IIHHI", 1, 20 + len(option), 1, 0, 0) + option + \
        struct.pack("<I", 20 + len(option))
    source = _write(str(tmp_path / "long.pcapng"), ng.section("<") + idb + ng.packet("<", 0, 1))
    out = str(tmp_path / "out.pcapng")
    done = _cli(["-r", source, "-w", out, "--pcapng"], str(tmp_path))
    assert done.returncode == 0, done.stderr.decode()[-300:]
    assert _tshark(out) == [("0", "1.000000000")]


def test_a_simple_packet_block_is_cut_at_its_interface_snap_length(tmp_path):
    """A Simple Packet Block has no captured length: it is min(original length, the IDB's
    snap length), as libpcap reads it - not the block's data with its padding."""
    from tests.capture_engine import helpers

    frame = ng.FRAME  # 46 bytes, padded to 48 in the block
    idb = struct.pack("<IIHHI", 1, 20, 1, 0, 40) + struct.pack("<I", 20)
    spb = struct.pack("<III", 3, 16 + 48, 100) + frame + bytes(2) + struct.pack("<I", 16 + 48)
    source = _write(str(tmp_path / "spb.pcapng"), ng.section("<") + idb + spb)
    want = helpers.tcpdump_filter(source, "", str(tmp_path / "ref.pcap"))
    assert [(r.data, r.length) for r in want] == [(frame[:40], 100)]
    out = str(tmp_path / "out.pcap")
    done = _cli(["-r", source, "-w", out], str(tmp_path))
    assert done.returncode == 0, done.stderr.decode()
    got = [(r.data, r.length) for r in helpers.read_pcap(out)]
    assert got == [(frame[:40], 100)], [(len(d), n) for d, n in got]


def test_interface_names_do_not_hold_the_file_in_memory(tmp_path):
    """An if_name may be 65,535 bytes: 500 such names (not UTF-8: each byte read as U+FFFD)
    held whole would take ~64 MB (a 4 GiB file of them, gigabytes); a name is kept to a
    length no NIC has, so memory stays flat however long the names."""
    import tracemalloc

    from capture_engine.savefile import SaveFile

    raw = b"\xff" * 65532
    option = struct.pack("<HH", 2, len(raw)) + raw + struct.pack("<HH", 0, 0)
    idb = struct.pack("<IIHHI", 1, 20 + len(option), 1, 0, 0) + option + \
        struct.pack("<I", 20 + len(option))
    source = _write(str(tmp_path / "names.pcapng"), ng.section("<") + idb * 500)
    tracemalloc.start()
    try:
        saved = SaveFile(source)
        names = saved.scan()
        saved.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(names) == 500 and names[0].startswith("\ufffd"), names[:1]
    assert peak < 8 << 20, f"{peak:,} bytes to read 500 interface names"
