"""/sdapi/v1: the AUTOMATIC1111 API, replaying the requests that chat programs' A1111 integrations send.

The request shapes come from the clients' source:
- Open WebUI: open-webui/open-webui, backend/open_webui/routers/images.py (verify_url, get_models,
  get_image_model, set_image_model, image_generations for the "automatic1111" engine).
- SillyTavern: SillyTavern/SillyTavern, src/endpoints/stable-diffusion.js (ping, upscalers, vaes, samplers,
  schedulers, models, get-model, set-model, generate) and public/scripts/extensions/stable-diffusion/index.js
  (generateAutoImage: the txt2img body, and `data.images[0]` as the result).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import threading

import pytest
import requests
from PIL import Image

from harness.server_process import RunningServer, wait_for

# Open WebUI sends `authorization: Basic base64(api_auth)`, or an empty header when no auth is configured.
OPEN_WEBUI_HEADERS = {"authorization": ""}


def png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image


def test_open_webui_connects_lists_the_model_and_generates(shared_server):
    base = shared_server.url
    # verify_url: GET /sdapi/v1/options, raise_for_status.
    options = requests.get(f"{base}/sdapi/v1/options", headers=OPEN_WEBUI_HEADERS, timeout=10)
    options.raise_for_status()
    # get_models: [{'id': model['title'], 'name': model['model_name']}].
    models = requests.get(f"{base}/sdapi/v1/sd-models", headers=OPEN_WEBUI_HEADERS, timeout=10).json()
    choices = [{"id": m["title"], "name": m["model_name"]} for m in models]
    every_offered_model = ["demo", "demo-fast", "demo-slow", "demo-edit", "demo-upscale"]
    assert [choice["name"] for choice in choices] == every_offered_model
    # get_image_model: options['sd_model_checkpoint'].
    assert options.json()["sd_model_checkpoint"] == choices[0]["id"]
    # set_image_model: GET options; if the model differs, POST the whole options dict back with it changed.
    current = options.json()
    current["sd_model_checkpoint"] = choices[0]["id"]
    posted = requests.post(f"{base}/sdapi/v1/options", json=current, headers=OPEN_WEBUI_HEADERS, timeout=10)
    posted.raise_for_status()
    assert posted.json() is None  # A1111 answers null
    # image_generations: {prompt, batch_size: n, width, height[, steps][, negative_prompt]} + AUTOMATIC1111_PARAMS.
    data = {"prompt": "a lighthouse", "batch_size": 2, "width": 512, "height": 384, "steps": 2}
    data |= {"negative_prompt": "blurry", "cfg_scale": 4.5, "sampler_name": "Euler a", "scheduler": "Karras"}
    result = requests.post(f"{base}/sdapi/v1/txt2img", json=data, headers=OPEN_WEBUI_HEADERS, timeout=60)
    result.raise_for_status()
    res = result.json()
    # It decodes each of res['images'] as base64 without a data: prefix (so: PNG) and keeps res['info'].
    assert len(res["images"]) == 2
    assert all(png(image).size == (512, 384) for image in res["images"])
    info = json.loads(res["info"])
    assert info["prompt"] == "a lighthouse" and info["negative_prompt"] == "blurry"
    assert info["width"] == 512 and info["height"] == 384 and info["steps"] == 2 and info["cfg_scale"] == 4.5
    assert len(info["all_seeds"]) == 2 and info["all_seeds"][1] == info["all_seeds"][0] + 1
    assert info["sd_model_name"] == "demo" and len(info["infotexts"]) == 2
    assert res["parameters"]["prompt"] == "a lighthouse" and res["parameters"]["batch_size"] == 2


def test_sillytavern_connects_lists_everything_and_generates(shared_server):
    base = shared_server.url
    # SillyTavern's server adds `Authorization: getBasicAuthHeader(auth)`: "Basic " + base64(auth), auth "" here.
    headers = {"Authorization": "Basic "}
    get = lambda path: requests.get(f"{base}/sdapi/v1/{path}", headers=headers, timeout=10)  # noqa: E731
    assert get("options").ok  # /ping
    # /upscalers: names of upscalers, latent modes spliced in after the first ("None").
    upscalers = [x["name"] for x in get("upscalers").json()]
    upscalers[1:1] = [x["name"] for x in get("latent-upscale-modes").json()]
    assert upscalers[0] == "None"
    # /vaes: the first of sd-vae (A1111) and sd-modules (Forge) that answers with an array; x.model_name each.
    vaes = get("sd-vae").json()
    assert isinstance(vaes, list) and [x["model_name"] for x in vaes] == []
    assert [x["name"] for x in get("samplers").json()] == ["Euler"]  # /samplers
    assert [x["name"] for x in get("schedulers").json()] == ["automatic"]  # /schedulers
    models = [{"value": x["title"], "text": x["title"]} for x in get("sd-models").json()]  # /models
    model = get("options").json()["sd_model_checkpoint"]  # /get-model
    assert models[0] == {"value": model, "text": model} and len(models) == 5  # the default first, then the others
    # /set-model: POST options {sd_model_checkpoint}, then poll progress until progress 0 and job_count 0.
    set_model = requests.post(f"{base}/sdapi/v1/options", json={"sd_model_checkpoint": model}, headers=headers)
    assert set_model.ok
    progress = get("progress").json()
    assert progress["progress"] == 0.0 and progress["state"]["job_count"] == 0
    # /generate: GET options (is it Forge?), then POST txt2img with the extension's body, which also carries
    # the client's own `url` and `auth` fields.
    assert "forge_preset" not in get("options").json()
    body = {
        "url": base, "auth": "", "prompt": "best quality, absurdres, aesthetic, a cat", "negative_prompt": "lowres",
        "sampler_name": "DDIM", "steps": 6, "cfg_scale": 7, "width": 512, "height": 512, "restore_faces": False,
        "enable_hr": False, "hr_upscaler": "Latent", "hr_scale": 2.0, "denoising_strength": 0.7,
        "hr_second_pass_steps": 0, "save_images": True, "send_images": True, "do_not_save_grid": False,
        "do_not_save_samples": False, "n_iter": 1, "s_churn": 0.0, "s_min_uncond": 0.0, "s_noise": 1.0,
        "s_tmax": None, "s_tmin": 0.0, "scheduler": "normal", "seed": 1234, "clip_skip": 1,
        "override_settings": {"CLIP_stop_at_last_layers": 1, "sd_model_checkpoint": model},
        "override_settings_restore_afterwards": True,
    }  # fmt: skip
    result = requests.post(f"{base}/sdapi/v1/txt2img", json=body, headers=headers, timeout=60)
    assert result.ok, result.text
    data = result.json()
    assert png(data["images"][0]).size == (512, 512)  # { format: 'png', data: data.images[0] }
    assert json.loads(data["info"])["all_seeds"] == [1234]
    assert "auth" not in data["parameters"]  # what it does not understand it does not echo


def test_batches_get_consecutive_seeds_and_seed_minus_one_is_random(shared_server):
    body = {"prompt": "a tree", "width": 256, "height": 256, "steps": 2, "seed": 42, "batch_size": 2, "n_iter": 2}
    result = shared_server.post("/sdapi/v1/txt2img", json=body).json()
    assert len(result["images"]) == 4 and json.loads(result["info"])["all_seeds"] == [42, 43, 44, 45]
    assert result["parameters"]["seed"] == 42
    first = json.loads(shared_server.post("/sdapi/v1/txt2img", json=body | {"seed": -1, "n_iter": 1}).json()["info"])
    second = json.loads(shared_server.post("/sdapi/v1/txt2img", json=body | {"seed": -1, "n_iter": 1}).json()["info"])
    assert first["all_seeds"] != second["all_seeds"]
    assert first["all_seeds"][1] == first["all_seeds"][0] + 1


def test_invalid_requests_answer_in_a1111s_error_shape(shared_server):
    response = shared_server.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "width": 10, "steps": 0})
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"error", "detail", "body", "errors"}
    assert "width: Must be between 64" in body["detail"] and "steps" in body["detail"]
    too_many = shared_server.post("/sdapi/v1/txt2img", json={"prompt": "a cat", "batch_size": 3, "n_iter": 2})
    assert too_many.status_code == 422 and "at most 4" in too_many.json()["detail"]
    unknown = shared_server.get("/sdapi/v1/nonesuch")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "Not Found"  # FastAPI's words, as A1111
    unsupported = shared_server.post("/sdapi/v1/interrogate", json={"image": ""})
    assert unsupported.status_code == 501  # not "Not Found": clients would report a broken server
    assert unsupported.json()["detail"] == "POST /sdapi/v1/interrogate is not supported by mflux-server."
    wrong_method = requests.put(shared_server.url + "/sdapi/v1/txt2img", timeout=10)
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    assert wrong_method.json()["detail"] == "Method Not Allowed"


def test_options_switch_the_default_model_and_override_settings_pick_one_per_request(server_factory):
    server = server_factory()
    titles = {m["model_name"]: m["title"] for m in server.get("/sdapi/v1/sd-models").json()}
    # As in A1111, the answer (null) comes once the model is loaded.
    switched = server.post("/sdapi/v1/options", json={"sd_model_checkpoint": titles["demo-fast"]})
    assert switched.status_code == 200 and switched.json() is None
    assert server.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == titles["demo-fast"]
    assert "demo-fast" in server.get("/api/health").json()["loaded"]
    body = {"prompt": "which model", "width": 256, "height": 256, "steps": 1}
    info = json.loads(server.post("/sdapi/v1/txt2img", json=body).json()["info"])
    assert info["sd_model_name"] == "demo-fast"
    override = {"override_settings": {"sd_model_checkpoint": "demo-slow"}}
    info = json.loads(server.post("/sdapi/v1/txt2img", json=body | override).json()["info"])
    assert info["sd_model_name"] == "demo-slow"
    assert server.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == titles["demo-fast"]  # per request only
    # A checkpoint this server does not offer is refused, naming it, in A1111's shape; nothing changes.
    refused = server.post("/sdapi/v1/options", json={"sd_model_checkpoint": "v1-5-pruned.ckpt [abc]"})
    assert refused.status_code == 422 and "v1-5-pruned.ckpt [abc]" in refused.json()["detail"]
    unknown = server.post("/sdapi/v1/txt2img", json=body | {"override_settings": {"sd_model_checkpoint": "sd15"}})
    assert unknown.status_code == 422
    assert unknown.json()["detail"].startswith("override_settings.sd_model_checkpoint: No model 'sd15' here")
    assert server.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == titles["demo-fast"]


def test_lists_clients_read_on_connect(shared_server):
    for path, expected in [("loras", []), ("prompt-styles", []), ("sd-modules", []), ("latent-upscale-modes", [])]:
        assert shared_server.get(f"/sdapi/v1/{path}").json() == expected
    assert shared_server.get("/sdapi/v1/embeddings").json() == {"loaded": {}, "skipped": {}}
    assert shared_server.post("/sdapi/v1/refresh-checkpoints").json() is None
    model = shared_server.get("/sdapi/v1/sd-models").json()[0]
    assert set(model) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert model["title"] == f"demo [{model['hash']}]" and model["sha256"].startswith(model["hash"])


# -- following and stopping a generation, on a slow server ----------------------------------------------------


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    with RunningServer(tmp_path_factory.mktemp("a1111") / "data", demo_speed=2) as server:
        yield server


@pytest.fixture
def server(slow_server):
    yield slow_server
    slow_server.get("/api/clear")


class Background:
    """A blocking txt2img call on a thread, as a chat program makes it."""

    def __init__(self, server: RunningServer, body: dict) -> None:
        self.response: requests.Response | None = None
        self._thread = threading.Thread(target=self._run, args=(server, body), daemon=True)
        self._thread.start()

    def _run(self, server: RunningServer, body: dict) -> None:
        self.response = server.post("/sdapi/v1/txt2img", json=body, timeout=60)

    def result(self, timeout: float = 30) -> requests.Response:
        self._thread.join(timeout)
        assert self.response is not None, "txt2img did not return"
        return self.response


SLOW = {"prompt": "slow", "width": 1024, "height": 1024, "steps": 8}  # ~1 s per step at demo speed 2


def running_progress(server: RunningServer) -> dict:
    return wait_for(
        lambda: (p := server.get("/sdapi/v1/progress").json())["state"]["sampling_step"] >= 1 and p,
        20,
        interval=0.05,
        what="a step of the running image",
    )


def test_progress_shows_the_running_image_and_interrupt_stops_it(server):
    call = Background(server, SLOW)
    progress = running_progress(server)
    assert progress["state"]["sampling_steps"] == 8 and progress["state"]["job_count"] == 1
    assert 0 < progress["progress"] < 1 and progress["eta_relative"] > 0
    assert progress["textinfo"].startswith("Generating: step")
    with_image = wait_for(
        lambda: (p := server.get("/sdapi/v1/progress").json())["current_image"] and p, 10, what="a preview"
    )
    assert png(with_image["current_image"]).size[0] <= 256
    skipped = server.get("/sdapi/v1/progress", params={"skip_current_image": "true"}).json()
    assert skipped["current_image"] is None
    assert server.post("/sdapi/v1/interrupt").json() == {}
    response = call.result()
    # As A1111: 200, with the stopped image as it stood (the preview at the image's size), no error.
    images = response.json()["images"]
    assert response.status_code == 200 and len(images) == 1 and png(images[0]).size == (1024, 1024)
    idle = server.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0.0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None


def test_skip_stops_only_the_running_image(server):
    call = Background(server, SLOW | {"width": 512, "height": 512, "batch_size": 2, "seed": 7})
    running_progress(server)
    wait_for(lambda: server.get("/sdapi/v1/progress").json()["current_image"], 10, what="a preview to stop at")
    assert server.post("/sdapi/v1/skip").json() is None  # A1111 answers null
    result = call.result().json()
    # The skipped image as it stood, and the next one finished, as A1111 returns a skipped batch.
    assert len(result["images"]) == 2 and json.loads(result["info"])["all_seeds"] == [7, 8]


def test_progress_and_interrupt_concern_only_the_callers_tasks(server):
    call = Background(server, SLOW)
    running_progress(server)

    def from_another_address(method: str, path: str) -> dict:
        # Linux answers on all of 127.0.0.0/8: 127.0.0.2 is another client to the server.
        connection = http.client.HTTPConnection(*server.url[7:].split(":"), timeout=10, source_address=("127.0.0.2", 0))
        try:
            connection.request(method, path)
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    other = from_another_address("GET", "/sdapi/v1/progress")
    assert other["state"]["job_count"] == 0 and other["current_image"] is None  # nothing of someone else's
    from_another_address("POST", "/sdapi/v1/interrupt")
    assert server.get("/sdapi/v1/progress").json()["state"]["job_count"] == 1  # still running
    server.post("/sdapi/v1/interrupt")
    assert call.result().status_code == 200


def test_a_client_that_hangs_up_has_its_tasks_cancelled(server):
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps(SLOW | {"batch_size": 2})
    request = (
        f"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request.encode())
        tasks = wait_for(
            lambda: len(t := server.get("/api/tasks", params={"status": ["waiting", "running"]}).json()) == 2 and t,
            10,
            what="both tasks to be queued",
        )
    for task in tasks:
        server.wait_status(task["task_id"], "cancelled", timeout=10)
