"""Progress bars: off when their stream is not a terminal or when asked, on a terminal otherwise; every
long-running command takes ``--no-progress``."""

import io
import os

import pytest

from ssl_nav.cli import build_parser
from ssl_nav.progress import tqdm

LONG_RUNNING = ("calibrate", "collect", "demo", "eval", "finetune", "habitat", "index", "simulate")


def _drawn(stream, **kw) -> str:
    for _ in tqdm(range(3), file=stream, mininterval=0, **kw):
        pass
    stream.flush()
    return stream.getvalue() if isinstance(stream, io.StringIO) else ""


def test_bars_are_off_when_the_stream_is_not_a_terminal():
    assert _drawn(io.StringIO()) == ""


def test_bars_are_drawn_on_a_terminal_unless_disabled(tmp_path):
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            assert tty.isatty()
            bar = tqdm(range(3), file=tty)
            assert not bar.disable
            bar.close()
            off = tqdm(range(3), file=tty, disable=True)
            assert off.disable
            off.close()
    finally:
        os.close(master)
        os.close(slave)


def test_the_environment_can_force_bars_on(monkeypatch):
    monkeypatch.setenv("SSL_NAV_PROGRESS", "1")
    assert "3/3" in _drawn(io.StringIO())
    assert _drawn(io.StringIO(), disable=True) == ""


def _subparser(command):
    return next(a for a in build_parser()._actions if a.dest == "command").choices[command]


@pytest.mark.parametrize("command", LONG_RUNNING)
def test_every_long_running_command_takes_no_progress(command):
    flag = next(a for a in _subparser(command)._actions if "--no-progress" in a.option_strings)
    assert flag.dest == "no_progress" and flag.default is False and flag.const is True


def test_collect_keeps_quiet_as_another_name_for_no_progress():
    flag = next(a for a in _subparser("collect")._actions if "--no-progress" in a.option_strings)
    assert "--quiet" in flag.option_strings
