"""`--log-level DEBUG` logs no prompt unless `--log-prompts` (issue 14, item 14).

Prompts are what users write, and may be private; the server logs only their length by default. At DEBUG,
libraries log too: Pillow echoes every EXIF tag it writes (the prompt is the image's description) and the PNG
chunks it reads, in the worker process and in the server. Those are held at INFO unless --log-prompts.
"""

from __future__ import annotations

import base64
import io

from PIL import Image

PROMPT = "zebra quokka 4711 private"


def log_of_a_session(server) -> str:
    """Images made and fetched every way that runs Pillow: JPEG (EXIF), PNG (text chunks), A1111 (PNG read)."""
    small = {"width": 64, "height": 64, "steps": 2}
    for image_format in ("jpeg", "png", "webp"):
        task_id = server.generate(PROMPT, format=image_format, **small)
        server.wait_status(task_id, "done")
        image = server.get("/api/image", params={"task_id": task_id})
        assert image.status_code == 200
        Image.open(io.BytesIO(image.content)).load()
    start = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(start, "PNG")
    edit = {"prompt": PROMPT, "init_images": [base64.b64encode(start.getvalue()).decode()], **small}
    assert server.post("/sdapi/v1/img2img", json=edit, timeout=60).status_code == 200
    a1111 = server.post("/sdapi/v1/txt2img", json={"prompt": PROMPT, **small}, timeout=60)
    assert a1111.status_code == 200
    assert server.stop() == 0  # every line the server and its worker logged is in now
    return "\n".join(server.lines)


def test_debug_logging_does_not_log_prompts(server_factory):
    log = log_of_a_session(server_factory("--log-level", "DEBUG"))
    assert " DEBUG " in log and "rendered in" in log, log[-2000:]  # our own debug lines are there
    leaks = [line for line in log.splitlines() if "quokka" in line]
    assert not leaks, leaks[:5]
    assert f"prompt {len(PROMPT)} chars" in log


def test_log_prompts_lets_libraries_debug_output_through(server_factory):
    log = log_of_a_session(server_factory("--log-level", "DEBUG", "--log-prompts"))
    assert f"prompt '{PROMPT}'" in log
    assert any(" PIL." in line for line in log.splitlines()), "Pillow's debug output is shown when asked"
