"""Digits that str.isdigit() takes and int() refuses ("²", "٣") in the files and variables the
handler reads: never an unexpected ValueError."""
from __future__ import annotations

import pytest

from connectivity.dns import ResolverConfig
from handler.settings_file import choose_sequence
from handler.state import StateStore

ODD = ["²", "①", "1²"]


@pytest.mark.parametrize("value", ODD)
def test_a_sequence_number_in_odd_digits_falls_back_to_the_newest_settings(tmp_path, value):
    (tmp_path / "3.settings").write_text("{}")
    assert choose_sequence(tmp_path, {"ConfigSequenceNumber": value}) == 3


@pytest.mark.parametrize("value", ODD)
def test_an_mrseq_in_odd_digits_reads_as_none(tmp_path, value):
    store = StateStore(tmp_path / "state", tmp_path / "mrseq")
    (tmp_path / "mrseq").write_text(value)
    assert store.last_seq() is None


@pytest.mark.parametrize("value", ODD)
def test_a_resolver_timeout_in_odd_digits_keeps_the_default(tmp_path, value):
    plain, odd = tmp_path / "plain.conf", tmp_path / "odd.conf"
    plain.write_text("nameserver 127.0.0.53\n")
    odd.write_text(f"nameserver 127.0.0.53\noptions timeout:{value}\n")
    assert ResolverConfig.load(str(odd)).timeout == ResolverConfig.load(str(plain)).timeout
