"""The README's first command runs devtools.demo: its capture must hold what it says it sent."""
from __future__ import annotations

import pytest

from devtools import demo

pytestmark = pytest.mark.root


def test_the_demo_captures_every_datagram_sent_to_its_filter(tmp_path, capsys):
    returncode = demo.run(4, None, tmp_path)
    out = capsys.readouterr()
    assert returncode == 0, out.out + out.err
    blob_line = next(line for line in out.out.splitlines() if line.startswith("blob:"))
    traffic_line = next(line for line in out.out.splitlines() if line.startswith("traffic:"))
    to_port = int(traffic_line.split(", ")[1].split()[0])
    assert to_port > 0 and f"{to_port} packets)" in blob_line, out.out
