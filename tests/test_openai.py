"""/v1: the OpenAI Images API, driven by the official `openai` package against the real server."""

from __future__ import annotations

import base64
import io
import json
import socket

import openai
import pytest
import requests
from PIL import Image

from harness.server_process import wait_for


@pytest.fixture(scope="module")
def client(shared_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=shared_server.url + "/v1", api_key="any key: this server has none set")


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_generate_b64_json_images_of_the_asked_size(client):
    result = client.images.generate(
        model="demo", prompt="a lighthouse at dusk", n=2, size="512x512", response_format="b64_json"
    )
    assert len(result.data) == 2
    images = [decode(item.b64_json) for item in result.data]
    assert all(image.format == "PNG" and image.size == (512, 512) for image in images)
    assert images[0].tobytes() != images[1].tobytes()  # two images, two random seeds
    assert result.created > 0 and result.size == "512x512" and result.output_format == "png"
    assert all(item.revised_prompt is None for item in result.data)


def test_url_format_points_at_this_servers_image_endpoint(client, shared_server):
    result = client.images.generate(prompt="a red square", size="256x256", response_format="url")
    (item,) = result.data
    assert item.b64_json is None
    assert item.url.startswith(shared_server.url + "/api/image?task_id=") and "delete=false" in item.url
    for _ in range(2):  # delete=false: the link keeps working (until the retention period ends)
        response = requests.get(item.url, timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (256, 256)


def test_openai_model_names_map_to_the_loaded_model(client):
    # Chat programs send OpenAI's names by default (Open WebUI: dall-e-2); gpt-image-* defaults to b64_json.
    result = client.images.generate(model="gpt-image-1", prompt="a blue circle", size="256x256")
    assert decode(result.data[0].b64_json).size == (256, 256)
    result = client.images.generate(model="dall-e-3", prompt="a blue circle", size="256x256", quality="hd")
    assert result.data[0].url  # dall-e-* defaults to url, as at OpenAI


def test_output_format_and_quality(client):
    result = client.images.generate(
        prompt="a green triangle", size="320x192", output_format="jpeg", quality="low", response_format="b64_json"
    )
    image = decode(result.data[0].b64_json)
    assert image.format == "JPEG" and image.size == (320, 192)
    assert result.output_format == "jpeg"


def test_a_bad_size_is_a_bad_request_with_our_message(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(prompt="too big", size="99999x512")
    error = caught.value
    assert error.status_code == 400
    assert error.body["param"] == "size" and error.body["type"] == "invalid_request_error"
    assert "between 64 and 2560 pixels" in error.body["message"]
    assert "between 64 and 2560 pixels" in str(error)
    with pytest.raises(openai.BadRequestError, match="WIDTHxHEIGHT"):
        client.images.generate(prompt="not a size", size="large")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"n": 5}, "n"),
        ({"model": "stable-diffusion-xl"}, "model"),
        ({"prompt": "   "}, "prompt"),
        ({"response_format": "png"}, "response_format"),
        ({"output_format": "gif"}, "output_format"),
    ],
)
def test_invalid_parameters_name_the_param(client, params, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(**{"prompt": "a cat", "size": "256x256", **params})
    assert caught.value.body["param"] == param
    assert caught.value.body["code"] == "invalid_value"


def test_unknown_model_error_names_the_offered_ones(client):
    with pytest.raises(openai.BadRequestError, match="This server offers demo, demo-fast, demo-slow") as caught:
        client.images.generate(model="sd15", prompt="a cat")
    assert caught.value.body["param"] == "model"


def test_model_picks_a_real_model_and_openais_names_mean_the_default(client, shared_server):
    result = client.images.generate(model="demo-fast", prompt="a fast one", size="256x256", response_format="url")
    task_id = result.data[0].url.split("task_id=")[1].split("&")[0]
    assert shared_server.status(task_id)["model"] == "demo-fast"
    result = client.images.generate(model="dall-e-3", prompt="the default", size="256x256", response_format="url")
    task_id = result.data[0].url.split("task_id=")[1].split("&")[0]
    assert shared_server.status(task_id)["model"] == "demo"


def test_models_list_and_retrieve(client):
    models = client.models.list()
    demo_models = ["demo", "demo-fast", "demo-slow", "demo-edit", "demo-upscale"]
    assert [m.id for m in models.data] == demo_models  # the default first
    assert models.data[0].object == "model" and models.data[0].owned_by == "mflux-server"
    assert client.models.retrieve("demo-slow").id == "demo-slow"
    assert client.models.retrieve("dall-e-3").id == "dall-e-3"  # an accepted alias
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "model_not_found"


def test_errors_under_v1_have_openais_shape(shared_server):
    unknown = shared_server.get("/v1/images/variations")
    assert unknown.status_code == 404
    assert set(unknown.json()) == {"error"}
    assert set(unknown.json()["error"]) == {"message", "type", "param", "code"}
    assert unknown.json()["error"]["message"] == "Invalid URL (GET /v1/images/variations)."
    wrong_method = requests.put(shared_server.url + "/v1/models", timeout=10)
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["Allow"]
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    malformed = shared_server.post(
        "/v1/images/generations", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400 and "Malformed JSON" in malformed.json()["error"]["message"]


def test_a_failed_generation_is_a_500_that_the_client_does_not_retry(client, shared_server):
    prompt = "[demo-fault:raise] openai"
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(prompt=prompt, size="256x256")
    assert "demo fault injected" in caught.value.body["message"]
    assert caught.value.response.headers["x-should-retry"] == "false"
    tasks = shared_server.get("/api/tasks", params={"status": "failed"}).json()
    assert sum(task["prompt"] == prompt for task in tasks) == 1  # sent once, not retried twice more


def test_a_client_that_hangs_up_has_its_tasks_cancelled(server_factory):
    server = server_factory(demo_speed=1)  # a 1024² image takes seconds: plenty of time to hang up
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "abandoned", "n": 2, "size": "1024x1024", "response_format": "b64_json"})
    request = (
        f"POST /v1/images/generations HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer x\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request.encode())
        tasks = wait_for(
            lambda: (t := server.get("/api/tasks").json()) and {x["status"] for x in t} == {"running", "waiting"} and t,
            10,
            what="the tasks to be queued and one to run",
        )
        assert len(tasks) == 2
    # The connection is closed: waitress notices (it keeps reading while the request runs) and the wait ends.
    for task in tasks:
        server.wait_status(task["task_id"], "cancelled", timeout=10)
    server.wait_for_log("Client disconnected while serving /v1/images/generations")
