"""`--gil-switch-ms`: how long a thread may keep the GIL from one that wants it back (api/serving.py)."""

from __future__ import annotations

import sys

import pytest

import server


@pytest.fixture
def restored_switch_interval():
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_the_server_runs_with_a_2_ms_switch_interval_unless_told_otherwise(monkeypatch, restored_switch_interval):
    monkeypatch.setattr(server, "configure_logging", lambda *args: None)
    # --no-local-worker without --broker: main refuses to start, after setting up the process.
    assert server.main(["--no-local-worker"]) == 2
    assert sys.getswitchinterval() == pytest.approx(0.002)
    assert server.main(["--no-local-worker", "--gil-switch-ms", "0.5"]) == 2
    assert sys.getswitchinterval() == pytest.approx(0.0005)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "fast"])
def test_a_switch_interval_that_is_not_a_positive_number_is_refused_naming_the_option(value, capsys):
    with pytest.raises(SystemExit) as exit:
        server.parse_args(["--gil-switch-ms", value])
    assert exit.value.code == 2
    assert "argument --gil-switch-ms:" in capsys.readouterr().err
