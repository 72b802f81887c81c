"""Images in, end to end on the real server: image-to-image, masks, edit models, upscaling, every bad input the
issue lists, restarts with image tasks queued; through /api, the `openai` package's edits (with and without a
mask, and streamed) and A1111's img2img as `webuiapi` sends it.

The demo engine honours inputs visibly (worker/engines/demo/pictures.py): img2img keeps `image_strength` of the
init image and blends in the procedural picture; demo-edit blends its first reference; demo-upscale enlarges.
What is outside a mask is the input picture exactly (the worker composites it back), so it is checked pixel for
pixel on PNG output.
"""

from __future__ import annotations

import base64
import io
import json
import signal

import numpy as np
import openai
import pytest
import webuiapi
from PIL import Image

from harness.server_process import wait_for

RED = (220, 30, 30)


def picture(size=(512, 384), colour=RED, mode="RGB") -> Image.Image:
    image = Image.new(mode, size, colour if mode != "RGBA" else (*colour, 255))
    image.paste((20, 90, 200) if mode == "RGB" else (20, 90, 200, 255), (0, 0, size[0] // 4, size[1] // 4))
    return image


def encoded(image: Image.Image, image_format: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **save)
    return buffer.getvalue()


def b64(image: Image.Image | bytes, image_format: str = "PNG") -> str:
    data = image if isinstance(image, bytes) else encoded(image, image_format)
    return base64.b64encode(data).decode("ascii")


def left_half_mask(size=(512, 384)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    return mask


def result(server, task_id: str) -> Image.Image:
    status = server.wait_status(task_id)
    assert status["status"] == "done", status
    response = server.get("/api/image", params={"task_id": task_id})
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def generate(server, **body) -> dict:
    response = server.post("/api/generate", json={"prompt": "a red barn", "steps": 4, "format": "PNG", **body})
    assert response.status_code == 200, response.text
    return response.json()


def refused(response, field: str, status: int = 422) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    return " ".join(body["errors"]["json"][field])


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b.resize(a.size), dtype=np.float32)).mean())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from harness.server_process import RunningServer

    with RunningServer(tmp_path_factory.mktemp("images") / "data", (), demo_speed=20) as running:
        yield running


# -- /api ------------------------------------------------------------------------------------------------------


def test_img2img_keeps_the_share_of_the_init_image_it_is_told_and_runs_only_its_steps(server):
    init = picture()
    kept = result(server, generate(server, init_image=b64(init), image_strength=0.9, steps=10, seed=3)["task_id"])
    redone = result(server, generate(server, init_image=b64(init), image_strength=0.1, steps=10, seed=3)["task_id"])
    plain = result(server, generate(server, width=512, height=384, steps=10, seed=3)["task_id"])
    assert kept.size == (512, 384)  # no width or height: the init image's size
    # Kept at 0.9, the result is the init image under a tint; at 0.1, nearly the text-to-image picture.
    assert mean_difference(kept, init) < 30 < mean_difference(redone, init)
    assert mean_difference(redone, plain) < mean_difference(kept, plain)


def test_a_running_img2img_counts_the_steps_that_run(server_factory):
    slow = server_factory(demo_speed=1)
    task = generate(slow, init_image=b64(picture()), image_strength=0.5, steps=8, width=512, height=512)["task_id"]
    status = wait_for(lambda: (s := slow.status(task))["progress"] and s, 30, what="progress")
    assert status["progress"]["steps"] == 4  # mflux starts half-way: 8 - int(8 × 0.5)
    slow.wait_status(task)


def test_outside_the_mask_the_result_is_the_init_image_exactly(server):
    init, mask = picture(), left_half_mask()
    made = result(server, generate(server, init_image=b64(init), mask_image=b64(mask), image_strength=0.0,
                                   mask_blur=0)["task_id"])  # fmt: skip
    pixels, original = np.asarray(made), np.asarray(init)
    assert np.array_equal(pixels[:, 256:], original[:, 256:])  # kept
    assert np.abs(pixels[:, :256].astype(int) - original[:, :256]).mean() > 20  # repainted


def test_a_mask_of_another_size_is_resized_to_the_picture(server):
    init = picture()
    made = result(server, generate(server, init_image=b64(init), mask_image=b64(left_half_mask((64, 48))),
                                   image_strength=0.0, mask_blur=0)["task_id"])  # fmt: skip
    assert np.array_equal(np.asarray(made)[:, 300:], np.asarray(init)[:, 300:])


def test_exif_orientation_is_applied_and_transparency_becomes_white(server):
    tall = picture((300, 500))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    sideways = tall.transpose(Image.Transpose.ROTATE_90)  # stored sideways, as a camera would
    upright = result(server, generate(server, init_image=b64(encoded(sideways, "JPEG", exif=exif)),
                                      image_strength=1.0)["task_id"])  # fmt: skip
    assert upright.size == (288, 496)  # shown upright (and rounded to the model's multiple of 16)
    clear = Image.new("RGBA", (256, 256), (255, 0, 0, 0))  # transparent red: white once flattened
    flattened = result(server, generate(server, init_image=b64(clear), image_strength=1.0)["task_id"])
    assert flattened.getpixel((128, 200)) == (255, 255, 255)


def test_an_edit_model_reads_its_references_and_refuses_too_many(server):
    first, second = picture(), picture(colour=(30, 200, 60))
    task = generate(server, model="demo-edit", init_images=[b64(first), b64(second)])
    made = result(server, task["task_id"])
    assert made.size == (512, 384) and mean_difference(made, first) < mean_difference(made, second)
    five = server.post("/api/generate", json={"prompt": "x", "model": "demo-edit", "init_images": [b64(first)] * 5})
    assert "at most 4" in refused(five, "init_images")
    none = server.post("/api/generate", json={"prompt": "x", "model": "demo-edit"})
    assert "edits an image" in refused(none, "init_image")


def test_an_upscale_is_twice_the_size_and_resembles_its_input(server):
    small = picture((200, 150))
    task = generate(server, model="demo-upscale", init_image=b64(small))
    assert (task["width"], task["height"], task["steps"]) == (400, 300, 1)
    made = result(server, task["task_id"])
    assert made.size == (400, 300) and mean_difference(made, small) < 25
    masked = server.post("/api/generate", json={"prompt": "x", "model": "demo-upscale", "init_image": b64(small),
                                                "mask_image": b64(left_half_mask((200, 150)))})  # fmt: skip
    assert "takes no mask" in refused(masked, "mask_image")


def test_bad_images_are_refused_naming_the_field_and_nothing_queued_is_disturbed(server_factory):
    server = server_factory("--max-input-mb", "0.2", "--max-input-side", "1024", demo_speed=1)
    queued = generate(server, width=512, height=512, steps=6)["task_id"]
    png = encoded(picture())
    bomb = encoded(Image.new("1", (20_000, 20_000)))  # 400 megapixels in a few kB: refused by its header
    noisy = Image.fromarray(np.random.default_rng(1).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    cases = {
        "not base64": ("init_image", "@@@", "base64"),
        "a GIF": ("init_image", b64(encoded(picture(), "GIF")), "PNG, JPEG or WEBP"),
        "not an image": ("init_image", b64(b"hello, world"), "PNG, JPEG or WEBP"),
        "truncated": ("init_image", b64(png[: len(png) // 2]), "truncated or corrupt"),
        "a bomb": ("init_image", b64(bomb), "at most 1024"),
        "too many bytes": ("init_image", b64(encoded(noisy)), "at most 0.2 MB"),
        "too wide": ("init_image", b64(encoded(Image.new("RGB", (1100, 64)))), "at most 1024"),
        "a bad mask": ("mask_image", b64(b"nope"), "PNG, JPEG or WEBP"),
    }
    for name, (field, value, words) in cases.items():
        body = {"prompt": "x", "init_image": b64(png), field: value}
        assert words in refused(server.post("/api/generate", json=body), field), name
    mask_alone = server.post("/api/generate", json={"prompt": "x", "mask_image": b64(left_half_mask())})
    assert "init image" in refused(mask_alone, "mask_image")
    strength = server.post("/api/generate", json={"prompt": "x", "init_image": b64(png), "image_strength": 1.5})
    assert "between 0 and 1" in refused(strength, "image_strength")
    second = server.post("/api/generate", json={"prompt": "x", "model": "demo-edit",
                                                "init_images": [b64(png), b64(b"x")]})  # fmt: skip
    assert "PNG, JPEG or WEBP" in refused(second, "init_images.1")  # the second image, named
    assert server.get("/api/tasks").headers["X-Total-Count"] == "1"  # none of them was queued
    assert server.wait_status(queued, timeout=60)["status"] == "done"  # and the queued one ran


def test_image_tasks_queued_over_a_restart_run_with_their_inputs(server_factory, tmp_path):
    data = tmp_path / "kept"
    server = server_factory(data_dir=data, demo_speed=2)
    blocker = generate(server, width=1024, height=1024, steps=40, format="JPEG")["task_id"]
    wait_for(lambda: server.status(blocker)["status"] == "running", what="the blocker to run")
    init = picture()
    masked = generate(server, init_image=b64(init), mask_image=b64(left_half_mask()), image_strength=0.0,
                      mask_blur=0)["task_id"]  # fmt: skip
    assert any((data / "inputs" / masked).iterdir())  # its inputs are stored with it
    server.stop(signal.SIGTERM)
    again = server_factory(data_dir=data, demo_speed=20)
    again.get("/api/cancel", params={"task_id": blocker})
    made = result(again, masked)
    assert np.array_equal(np.asarray(made)[:, 256:], np.asarray(init)[:, 256:])  # the same inputs, after it
    wait_for(lambda: not (data / "inputs" / masked).exists(), what="its inputs removed once it ended")


# -- OpenAI edits, as the openai package sends them ---------------------------------------------------------------


def test_openai_edits_with_and_without_a_mask(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    init = picture((512, 512))
    mask = Image.new("RGBA", (512, 512), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 256, 512))  # OpenAI: transparent = edited
    edited = client.images.edit(image=("init.png", encoded(init), "image/png"), prompt="a hat",
                                mask=("mask.png", encoded(mask), "image/png"), response_format="b64_json")  # fmt: skip
    made = Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json))).convert("RGB")
    assert edited.size == "512x512" and np.array_equal(np.asarray(made)[:, 300:], np.asarray(init)[:, 300:])
    unmasked = client.images.edit(image=("init.png", encoded(init)), prompt="a hat", response_format="b64_json")
    assert Image.open(io.BytesIO(base64.b64decode(unmasked.data[0].b64_json))).size == (512, 512)
    # Without a mask, the image's own transparency is the mask (OpenAI's rule).
    see_through = init.convert("RGBA")
    see_through.paste((0, 0, 0, 0), (0, 0, 256, 512))
    by_alpha = client.images.edit(image=("a.png", encoded(see_through)), prompt="x", response_format="b64_json")
    alpha_made = Image.open(io.BytesIO(base64.b64decode(by_alpha.data[0].b64_json))).convert("RGB")
    assert np.array_equal(np.asarray(alpha_made)[:, 300:], np.asarray(init)[:, 300:])
    several = client.images.edit(image=[("a.png", encoded(init)), ("b.png", encoded(init))], prompt="x",
                                 model="demo-edit", response_format="b64_json")  # fmt: skip
    assert len(several.data) == 1
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(image=("x.png", b"not an image"), prompt="x")
    assert caught.value.body["param"] == "image"
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(image=[("a.png", encoded(init)), ("b.png", encoded(init))], prompt="x")
    assert caught.value.body["param"] == "image" and "only edit models" in caught.value.body["message"]


def test_openai_edits_as_json_with_data_urls(server):
    url = "data:image/png;base64," + b64(picture((256, 256)))
    response = server.post("/v1/images/edits", json={"prompt": "x", "images": [{"image_url": url}],
                                                     "response_format": "b64_json"})  # fmt: skip
    assert response.status_code == 200, response.text and response.json()["size"] == "256x256"
    fetched = server.post("/v1/images/edits", json={"prompt": "x", "images": [{"image_url": "https://e.com/a.png"}]})
    assert fetched.status_code == 400 and "does not fetch" in fetched.json()["error"]["message"]


# -- A1111 img2img and inpainting, as webuiapi sends them -------------------------------------------------------


def test_a1111_img2img_and_inpainting_through_webuiapi(server):
    api = webuiapi.WebUIApi(baseurl=server.url + "/sdapi/v1")
    init, mask = picture((512, 512)), left_half_mask((512, 512))
    plain = api.img2img(images=[init], prompt="cat", denoising_strength=0.6, steps=4, seed=5)
    assert plain.image.size == (512, 512) and plain.info["all_seeds"] == [5]
    assert 0 < mean_difference(plain.image.convert("RGB"), init) < 120
    for fill in range(4):
        inpainted = api.img2img(images=[init], mask_image=mask, prompt="cat", inpainting_fill=fill, steps=4,
                                inpaint_full_res=False, mask_blur=0)  # fmt: skip
        pixels = np.asarray(inpainted.image.convert("RGB"))
        assert np.array_equal(pixels[:, 300:], np.asarray(init)[:, 300:]), fill
    only_masked = api.img2img(images=[init], mask_image=mask, prompt="cat", inpaint_full_res=True,
                              inpaint_full_res_padding=32, mask_blur=0, steps=4)  # fmt: skip
    assert np.array_equal(np.asarray(only_masked.image.convert("RGB"))[:, 300:], np.asarray(init)[:, 300:])
    inverted = api.img2img(images=[init], mask_image=mask, prompt="cat", inpainting_mask_invert=1,
                           inpaint_full_res=False, mask_blur=0, steps=4)  # fmt: skip
    assert np.array_equal(np.asarray(inverted.image.convert("RGB"))[:, :200], np.asarray(init)[:, :200])
    batch = api.img2img(images=[init, init], batch_size=2, prompt="cat", steps=2, seed=9)
    assert len(batch.images) == 2 and batch.info["all_seeds"] == [9, 10]


def test_a1111_img2img_answers_in_its_shape_and_echoes_inputs_only_when_asked(server):
    body = {"prompt": "cat", "init_images": ["data:image/png;base64," + b64(picture((256, 256)))], "steps": 2}
    answer = server.post("/sdapi/v1/img2img", json=body).json()
    assert set(answer) == {"images", "parameters", "info"} and answer["parameters"]["init_images"] is None
    assert json.loads(answer["info"])["denoising_strength"] == 0.75
    echoed = server.post("/sdapi/v1/img2img", json=body | {"include_init_images": True}).json()
    assert echoed["parameters"]["init_images"] == body["init_images"]  # exactly as sent
    bad = server.post("/sdapi/v1/img2img", json={"prompt": "cat", "init_images": [b64(b"nope")]})
    assert bad.status_code == 422 and "init_images" in bad.json()["detail"]
    too_many = server.post("/sdapi/v1/img2img", json=body | {"init_images": body["init_images"] * 3, "batch_size": 2})
    assert too_many.status_code == 422 and "init_images" in too_many.json()["detail"]


def test_a1111_extras_upscale_with_an_upscale_model(server):
    api = webuiapi.WebUIApi(baseurl=server.url + "/sdapi/v1")
    upscaled = api.extra_single_image(image=picture((200, 100)), upscaling_resize=2)
    assert upscaled.image.size == (400, 200)
