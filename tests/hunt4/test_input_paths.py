"""-r FILE where FILE is no saved capture file: a FIFO, a pipe, a device; a SAS-bearing path."""
from __future__ import annotations

import os
import subprocess

import pytest

from tests.hunt4 import pcapng_craft as ng
from tests.hunt4.test_pcapng_input import CLI, ROOT, _cli

SECRET = "sv=2024-01-01&sig=Zm9vYmFyU2VjcmV0U2lnbmF0dXJl%3D"


def test_a_fifo_without_writer_is_refused_at_once(tmp_path):
    """open() of a FIFO blocks until someone writes: -r must not hang there for ever."""
    fifo = str(tmp_path / "capture.pcap")
    os.mkfifo(fifo)
    try:
        done = _cli(["-r", fifo], str(tmp_path), timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("-r on a FIFO with no writer hung")
    err = done.stderr.decode()
    assert done.returncode == 1 and "error 132" in err and "regular file" in err, err


@pytest.mark.parametrize("source", ["/dev/stdin", "/dev/zero"])
def test_a_pipe_or_device_is_a_coded_error(tmp_path, source):
    """A pipe on stdin cannot be read twice (interfaces first, then packets): a coded error
    naming it, never io.UnsupportedOperation's traceback."""
    data = ng.sections("<", [["eth0"]])
    done = subprocess.run(CLI + ["-r", source], input=data, cwd=str(tmp_path),
                          capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT})
    err = done.stderr.decode()
    assert done.returncode == 1 and "error 132" in err and "Traceback" not in err, err


@pytest.mark.parametrize("flag", ["-r", "-w"])
def test_a_sas_bearing_path_is_not_echoed(tmp_path, flag):
    """A path pasted with a SAS query string in it: the signature is not in the message."""
    source = str(tmp_path / "in.pcapng")
    with open(source, "wb") as out:
        out.write(ng.sections("<", [["eth0"]]))
    (tmp_path / "plain").write_text("a file, not a folder")
    bad = str(tmp_path / "plain" / f"x.pcap?{SECRET}") if flag == "-w" else \
        str(tmp_path / f"missing.pcap?{SECRET}")
    args = ["-r", bad] if flag == "-r" else ["-r", source, "-w", bad]
    done = _cli(args, str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 1 and "error 13" in err, err
    assert "Zm9vYmFy" not in err and "sig=REDACTED" in err, err


def _source(tmp_path) -> str:
    source = str(tmp_path / "in.pcapng")
    with open(source, "wb") as out:
        out.write(ng.sections("<", [["eth0"]]))
    return source


@pytest.mark.parametrize("write", ["", "  ", "folder", "folder/"])
def test_w_that_names_no_file_is_refused(tmp_path, write):
    """-w '' is no output at all (a count), -w FOLDER wrote FOLDER~2 beside the folder:
    both are a coded error naming -w, and nothing is written."""
    (tmp_path / "folder").mkdir()
    source = _source(tmp_path)
    before = sorted(os.listdir(tmp_path))
    done = _cli(["-r", source, "-w", write if not write.startswith("folder") else
                 f"{tmp_path}/{write}"], str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 2 and "error 106" in err and "-w" in err, (done.stdout, err)
    assert sorted(os.listdir(tmp_path)) == before and not os.listdir(tmp_path / "folder")


def test_an_empty_r_is_an_input_error_not_a_missing_w(tmp_path):
    done = _cli(["-r", ""], str(tmp_path))
    err = done.stderr.decode()
    assert done.returncode == 1 and "error 132" in err, err
