"""The web UI with input images, in headless Chromium against a real demo server: an init image picked, dropped or
pasted, a mask painted with the mouse, an edit model's references, an upscale, "Use as input".

The demo engine honours inputs visibly (img2img keeps `image_strength` of the init image; outside a mask the result
is the init image; an edit blends its references; an upscale doubles the size), so each test checks the picture the
server made, not just that a request was sent. Fixtures and helpers are those of tests/test_webui.py.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from tests import test_webui as webui
from tests.test_webui import cards, expect, wait_images

# The fixtures of tests/test_webui.py (a Chromium, a fresh context per page), for this module too.
browser, open_page = webui.browser, webui.open_page

pytestmark = pytest.mark.browser

CAPTION_ROWS = 43  # the demo engine writes what it is into the top rows of every picture (label in pictures.py)


def picture(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A test picture with structure everywhere (gradients and shapes), different for each seed."""
    width, height = size
    red = Image.linear_gradient("L").rotate(90 * seed).resize(size)
    green = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(size)
    blue = Image.new("L", size, 60 + 50 * seed)
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 3, height // 3, width // 3 + width // 4, height // 3 + height // 4), fill=(250, 220, 30))
    draw.rectangle((0, height - height // 6, width, height), fill=(30 + 60 * seed, 140, 60))
    return image


def save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def decoded(data_url: str) -> Image.Image:
    """An image field of a request body (base64, with or without a data: prefix)."""
    data = data_url.split(",", 1)[1] if data_url.startswith("data:") else data_url
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


class Bodies:
    """The JSON bodies the page POSTs to /api/generate, in order."""

    def __init__(self, page) -> None:
        self.sent: list[dict] = []
        page.on("request", self._seen)

    def _seen(self, request) -> None:
        if request.method == "POST" and request.url.endswith("/api/generate"):
            self.sent.append(request.post_data_json)


def result(server, task_id: str) -> Image.Image:
    response = server.get("/api/image", params={"task_id": task_id, "delete": "false"})
    response.raise_for_status()
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def drag(page, locator, points: list[tuple[float, float]]) -> None:
    """A mouse drag through `points`, given as fractions of the element's box."""
    box = locator.bounding_box()
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


# Form controls and buttons without an accessible name, as tests/test_webui.py checks them.
UNNAMED_JS = """() => [...document.querySelectorAll('input, select, textarea, button')].filter(el => {
  const named = el.getAttribute('aria-label') || (el.labels && el.labels.length)
    || (!el.matches('input, select, textarea') && el.textContent.trim());
  return !named;
}).map(el => el.outerHTML.slice(0, 120))"""


def open_ui(open_page, server, **options):
    page, watch = open_page(server.url + "/", viewport={"width": 1280, "height": 900}, **options)
    expect(page.get_by_label("Model", exact=True)).to_have_value("demo")  # the model list is in
    return page, watch


def prompt_and_go(page, prompt: str, image_format: str = "PNG") -> None:
    page.get_by_label("Format").select_option(image_format)
    box = page.get_by_label("Prompt", exact=True)
    box.fill(prompt)
    box.press("Enter")


def test_upload_paint_a_mask_and_generate(open_page, server_factory, tmp_path):
    server = server_factory(demo_speed=20)
    page, watch = open_ui(open_page, server)
    bodies = Bodies(page)
    init = picture((320, 240))
    page.locator("#image-file").set_input_files(save(init, tmp_path / "garden.png"))

    page.wait_for_function("() => document.querySelector('#init-preview').naturalWidth === 320")
    expect(page.locator("#dropzone-hint")).to_have_text("garden.png · 320×240")
    expect(page.get_by_label("Size", exact=True)).to_have_value("image")  # without width/height: the image's size
    expect(page.locator("#size-from-image")).to_have_text("From the image · 320 × 240")
    expect(page.get_by_label("Width", exact=True)).to_be_hidden()
    expect(page.get_by_text("Keep of the image: 40%")).to_be_visible()
    expect(page.locator("#image-pick")).to_have_text("Replace…")

    # Paint a thick vertical stroke on the left (shown at its own size: 1 page pixel = 1 image pixel), then erase
    # its lower end again.
    canvas = page.locator("#mask-canvas")
    assert canvas.bounding_box()["width"] == pytest.approx(320, abs=1)
    page.get_by_role("button", name="Brush").click()
    expect(page.get_by_role("button", name="Brush")).to_have_attribute("aria-pressed", "true")
    page.get_by_label("Brush size").fill("40")
    drag(page, canvas, [(0.2, 0.1), (0.2, 0.5), (0.2, 0.9)])
    page.get_by_role("button", name="Erase").click()
    expect(page.get_by_role("button", name="Brush")).to_have_attribute("aria-pressed", "false")
    drag(page, canvas, [(0.1, 0.8), (0.3, 0.8), (0.3, 0.95), (0.1, 0.95)])
    page.get_by_role("button", name="Erase").click()  # done painting: the picture scrolls like the page again
    assert page.evaluate("() => !('tool' in document.querySelector('#mask-canvas').dataset)")

    prompt_and_go(page, "a garden, repainted on the left")
    card = page.locator("#cards > li").first
    wait_images(page, [0])
    expect(card.locator(".meta")).to_contain_text("320×240 · 4 steps · PNG · from an image · keep 40% · masked")
    page.screenshot(path=tmp_path / "webui-image-mask.png", full_page=True)
    print(f"screenshot: {tmp_path / 'webui-image-mask.png'}")

    [body] = bodies.sent
    assert "width" not in body and "height" not in body and "resize" not in body
    assert body["image_strength"] == 0.4
    assert pixels(decoded(body["init_image"])).tolist() == pixels(init).tolist()  # sent as it was
    mask = decoded(body["mask_image"])
    assert (mask.format, mask.size) == ("PNG", (320, 240)), "a PNG at the image's own size"
    grey = np.asarray(mask.convert("L"))
    assert grey[60, 64] == 255 and grey[120, 64] == 255, "painted: white"
    assert grey[216, 64] == 0, "painted, then erased: black"
    assert grey[120, 250] == 0 and grey[10, 200] == 0, "never painted: black"

    made = result(server, card.get_attribute("data-task-id"))
    assert (made.format, made.size) == ("PNG", (320, 240))
    # Outside the mask (and its feathered edge) the result is the init image, pixel for pixel; inside it is not.
    near = np.asarray(mask.convert("L").filter(ImageFilter.MaxFilter(31))) > 0
    core = np.asarray(mask.convert("L").filter(ImageFilter.MinFilter(9))) > 0
    difference = np.abs(pixels(made) - pixels(init)).sum(axis=2)
    assert difference[~near].max() == 0
    assert difference[core].mean() > 40
    assert watch.errors == []


def test_use_as_input_and_the_strength_slider(open_page, server_factory, tmp_path):
    server = server_factory(demo_speed=20)
    page, watch = open_ui(open_page, server)
    bodies = Bodies(page)
    page.get_by_label("Size", exact=True).select_option("512x512")
    prompt_and_go(page, "a harbour at noon")
    wait_images(page, [0])
    first_id = page.locator("#cards > li").first.get_attribute("data-task-id")
    first = result(server, first_id)
    assert "init_image" not in bodies.sent[0] and "image_strength" not in bodies.sent[0]

    page.locator("#cards > li").first.get_by_role("button", name=re.compile("^Use as input")).click()
    page.wait_for_function("() => document.querySelector('#init-preview').naturalWidth === 512")
    expect(page.locator("#dropzone-hint")).to_contain_text("· 512×512")
    strength = page.get_by_label("Keep of the image")
    strength.fill("100")
    expect(page.locator("#strength-field label")).to_have_text("Keep of the image: 100%")
    prompt_and_go(page, "the same harbour")
    expect(page.locator("#cards > li")).to_have_count(2)
    wait_images(page, [0])
    second_id = page.locator("#cards > li").first.get_attribute("data-task-id")

    sent = bodies.sent[1]
    assert sent["image_strength"] == 1.0 and "mask_image" not in sent
    assert pixels(decoded(sent["init_image"])).tolist() == pixels(first).tolist(), "the card's image, as it was"
    # All of the image kept: below the demo's caption the second picture is the first one.
    second = result(server, second_id)
    assert np.abs(pixels(second) - pixels(first))[CAPTION_ROWS:].max() <= 1
    expect(page.locator("#cards > li").first.locator(".meta")).to_contain_text("from an image · keep 100%")

    # "New seed" sends it again with the same image; after a reload the page no longer holds the image.
    page.locator("#cards > li").first.get_by_role("button", name=re.compile("^Same prompt, new seed")).click()
    expect(page.locator("#cards > li")).to_have_count(3)
    assert bodies.sent[2]["init_image"] == sent["init_image"] and bodies.sent[2]["seed"] != sent["seed"]
    wait_images(page, [0])

    # "Edit" on that card puts its settings and its image back in the form.
    page.get_by_role("button", name="Remove the input image").click()
    expect(page.locator("#init")).to_be_hidden()
    page.evaluate("() => { document.querySelector('#strength').value = 40; }")  # hidden now: as someone left it
    page.locator("#cards > li").first.get_by_role("button", name=re.compile("^Edit")).click()
    page.wait_for_function("() => document.querySelector('#init-preview').naturalWidth === 512")
    expect(page.locator("#strength-field label")).to_have_text("Keep of the image: 100%")
    expect(page.get_by_label("Size", exact=True)).to_have_value("512x512")

    page.reload()
    wait_images(page, range(3))
    again = page.locator("#cards > li").first.get_by_role("button", name=re.compile("^Same prompt, new seed"))
    expect(again).to_be_hidden()
    expect(page.locator("#cards > li").nth(2).get_by_role("button", name=re.compile("^Same prompt"))).to_be_visible()
    expect(page.locator("#init")).to_be_hidden()

    # A result dragged from its card onto the form becomes the input image too.
    page.locator("#cards > li").nth(2).locator("img.result").drag_to(page.locator("#dropzone"))
    page.wait_for_function("() => document.querySelector('#init-preview').naturalWidth === 512")
    expect(page.locator("#dropzone-hint")).to_contain_text(".png · 512×512")
    assert watch.errors == []


def test_edit_model_with_two_references_dropped_and_pasted(open_page, server_factory, tmp_path):
    server = server_factory(demo_speed=20)
    page, watch = open_ui(open_page, server)
    bodies = Bodies(page)
    picker = page.get_by_label("Model", exact=True)
    for name in ("demo-edit", "demo-upscale"):  # they need an image: not before one is given
        expect(page.locator(f"#model option[value={name}]")).to_be_disabled()

    first, second = picture((256, 192), seed=0), picture((200, 200), seed=1)
    page.locator("#image-file").set_input_files(save(first, tmp_path / "first.png"))
    expect(page.locator("#model option[value=demo-edit]")).to_be_enabled()
    picker.select_option("demo-edit")
    expect(page.locator("#image-title")).to_have_text("Images to edit")
    expect(page.locator("#image-need")).to_have_text("1 of up to 4")
    expect(page.locator("#image-pick")).to_have_text("Add image…")
    expect(page.locator("#strength-field")).to_be_hidden()  # an edit does not start part-way from the image
    expect(page.get_by_role("button", name="Brush")).to_be_visible()  # demo-edit takes a mask
    page.locator("#image-file").set_input_files(save(second, tmp_path / "second.png"))
    expect(page.locator("#references li")).to_have_count(1)
    expect(page.locator("#image-need")).to_have_text("2 of up to 4")
    assert page.evaluate(UNNAMED_JS) == []
    page.screenshot(path=tmp_path / "webui-edit.png", full_page=True)
    print(f"screenshot: {tmp_path / 'webui-edit.png'}")

    prompt_and_go(page, "the two of them together")
    card = page.locator("#cards > li").first
    wait_images(page, [0])
    task_id = card.get_attribute("data-task-id")
    [body] = bodies.sent
    assert body["model"] == "demo-edit" and "image_strength" not in body and "mask_image" not in body
    assert pixels(decoded(body["init_image"])).tolist() == pixels(first).tolist()
    assert [pixels(decoded(image)).tolist() for image in body["init_images"]] == [pixels(second).tolist()]
    expect(card.locator(".meta")).to_contain_text("demo-edit · seed")
    expect(card.locator(".meta")).to_contain_text("256×192 · 4 steps · PNG · edit of 2 images")
    made = result(server, task_id)
    assert made.size == (256, 192)
    assert np.abs(pixels(made) - pixels(first))[CAPTION_ROWS:].mean() > 10, "edited, not returned as it was"

    # Without its images the edit model stays picked, and Generate says what it needs.
    page.get_by_role("button", name=re.compile(r"^Remove image 2")).click()
    page.get_by_role("button", name="Remove the input image").click()
    expect(page.locator("#image-need")).to_have_text("required")
    expect(picker).to_have_value("demo-edit")
    page.get_by_label("Prompt", exact=True).press("Enter")
    expect(page.locator("#form-message")).to_have_text("demo-edit edits an image: choose, drop or paste one first.")
    expect(page.locator("#cards > li")).to_have_count(1)

    # A pasted picture becomes the first image, a dropped one a reference.
    def send(event: str, image: Image.Image, name: str) -> None:
        data = io.BytesIO()
        image.save(data, "PNG")
        page.evaluate(
            """([event, bytes, name]) => {
              const transfer = new DataTransfer();
              transfer.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'}));
              const target = event === 'paste' ? document.body : document.querySelector('#dropzone');
              const init = {clipboardData: transfer, dataTransfer: transfer, bubbles: true, cancelable: true};
              target.dispatchEvent(event === 'paste' ? new ClipboardEvent('paste', init) : new DragEvent('drop', init));
            }""",
            [event, list(data.getvalue()), name],
        )

    send("paste", second, "pasted.png")
    expect(page.locator("#dropzone-hint")).to_have_text("pasted.png · 200×200")
    send("drop", first, "dropped.png")
    expect(page.locator("#references li")).to_have_count(1)
    expect(page.locator("#references img")).to_have_attribute("alt", "Image 2: dropped.png")
    assert watch.errors == []


def test_upscale_model_doubles_the_image(open_page, server_factory, tmp_path):
    server = server_factory(demo_speed=20)
    page, watch = open_ui(open_page, server)
    page.locator("#image-file").set_input_files(save(picture((192, 144)), tmp_path / "small.png"))
    page.get_by_label("Model", exact=True).select_option("demo-upscale")
    expect(page.locator("#image-title")).to_have_text("Image to upscale")
    expect(page.locator("#mask-tools")).to_be_hidden()  # an upscale takes no mask
    expect(page.locator("#strength-field")).to_be_hidden()
    expect(page.locator("#size-from-image")).to_have_text("2× the image · 384 × 288")
    prompt_and_go(page, "sharper, please")
    wait_images(page, [0])
    shown = page.evaluate(
        "() => { const i = document.querySelector('#cards img.result'); return [i.naturalWidth, i.naturalHeight] }"
    )
    assert shown == [384, 288]
    card = page.locator("#cards > li").first
    expect(card.locator(".meta")).to_contain_text("384×288 · 1 steps · PNG · upscaled")
    assert result(server, card.get_attribute("data-task-id")).size == (384, 288)
    page.screenshot(path=tmp_path / "webui-upscale.png", full_page=True)
    assert watch.errors == []


def test_a_picture_beyond_the_servers_limits_is_reduced_before_it_is_sent(open_page, server_factory, tmp_path):
    server = server_factory("--max-input-side", "512", "--max-input-mb", "0.2", demo_speed=20)
    page, watch = open_ui(open_page, server)
    bodies = Bodies(page)
    noisy = Image.effect_noise((1200, 600), 80).convert("RGB")  # ~2 MB as PNG: over both limits
    page.locator("#image-file").set_input_files(save(noisy, tmp_path / "big.png"))
    expect(page.locator("#image-message")).to_contain_text("Reduced to fit the server's limits")
    expect(page.locator("#dropzone-hint")).to_contain_text("reduced from 1200×600")
    prompt_and_go(page, "a smaller one")
    wait_images(page, [0])
    sent = decoded(bodies.sent[0]["init_image"])
    assert max(sent.size) <= 512 and sent.size[0] == 2 * sent.size[1]
    assert len(base64.b64decode(bodies.sent[0]["init_image"].split(",", 1)[1])) <= 0.2 * 1024 * 1024
    assert cards(page)[0]["status"] == "done"

    # Not an image at all: said at once, nothing sent.
    (tmp_path / "notes.png").write_text("not a picture")
    page.locator("#image-file").set_input_files(tmp_path / "notes.png")
    expect(page.locator("#image-message")).to_have_text("notes.png is not an image this browser can read.")
    assert len(bodies.sent) == 1
    assert watch.errors == []


def test_phone_width_with_an_image_and_a_touch_painted_mask(open_page, shared_server, tmp_path):
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
    page, watch = open_page(shared_server.url + "/", **phone)
    page.locator("#image-file").set_input_files(save(picture((800, 600)), tmp_path / "wide.png"))
    page.wait_for_function("() => document.querySelector('#init-preview').naturalWidth === 800")
    assert page.evaluate("() => document.documentElement.scrollWidth <= 390")
    page.get_by_role("button", name="Brush").tap()
    box = page.locator("#mask-canvas").bounding_box()
    page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert page.evaluate("() => inputs.maskImage() !== null"), "a tap paints a dot"
    page.screenshot(path=tmp_path / "webui-phone-image.png", full_page=True)
    print(f"phone screenshot: {tmp_path / 'webui-phone-image.png'}")
    assert watch.errors == []
