"""The server never substitutes an engine: a missing mflux or unloadable weights are said plainly."""

from __future__ import annotations

import importlib.util

import pytest

import server
from harness.server_process import wait_for


def test_missing_mflux_stops_the_server_with_instructions(monkeypatch, capsys, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mflux" else real_find_spec(name, *a)
    )
    assert server.main(["--engine", "mflux", "--data-dir", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "mflux package, which is not installed" in message
    assert "pip install" in message
    assert "--engine demo" in message


@pytest.mark.mflux
def test_unloadable_weights_are_reported_and_generation_refused(server_factory):
    pytest.importorskip("mflux")
    server = server_factory("--model", "schnell", "-q", "8", engine="mflux", env={"HF_HUB_OFFLINE": "1"}, start=False)
    server.start(wait_ready=False)
    # (Before the first worker is up, health briefly says "not running"; wait for the load failure itself.)
    health = wait_for(lambda: "schnell" in ((h := server.get("/api/health").json()).get("error") or "") and h, 120)
    assert server.get("/api/health").status_code == 503
    assert "schnell" in health["error"]
    assert health["model_loaded"] is False
    assert health["error"].startswith("the default model schnell@q8 cannot be loaded: Could not load the mflux model")
    refused = server.post("/api/generate", json={"prompt": "a cat"})
    assert refused.status_code == 503
    assert refused.json()["message"].startswith("The model schnell@q8 cannot be loaded: Could not load")
    assert "black-forest-labs/FLUX.1-schnell at revision 741f7c3ce8b3" in refused.json()["message"]
    assert "mflux-check" in refused.json()["message"]
    assert "demo" not in server.get("/api/info").json()["label"]
    assert server.get("/api/health").json()["worker_alive"] is True  # it stays up for the models that can load
