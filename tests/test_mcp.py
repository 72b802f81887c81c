"""mflux-server-mcp (`clients/mflux_mcp`): the MCP server over stdio, driven by the SDK's real client, in front
of a real mflux-server on the demo engine.

Each test starts `python -m mflux_mcp --server URL` as a subprocess, as an MCP client (Claude Desktop, an agent)
would, and talks MCP to it: initialize, list tools, call them. Waits poll with deadlines; nothing sleeps blindly.
"""

from __future__ import annotations

import base64
import io
import time

import anyio
import pytest
from mcp import ClientSession
from mcp.shared.exceptions import MCPError
from PIL import Image

from harness.server_process import wait_for
from tests.support.mcp_stdio import image_of, mcp_session, run, text_of, unused_port
from tests.support.stub_http import stub_server

pytestmark = pytest.mark.slow  # each test starts an mflux-server and an MCP server process

TOOLS = {"generate_image", "get_task", "cancel_task", "list_models"}
# About 15 s on the demo engine at the fixture's speed: long enough to be cancelled while it runs.
LONG = {"width": 2048, "height": 2048, "steps": 50}


async def poll_get_task(session: ClientSession, task_id: str, timeout: float = 60, **arguments):
    """Call get_task until it returns an image (or an error); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await session.call_tool("get_task", {"task_id": task_id, **arguments})
        if result.is_error or any(block.type == "image" for block in result.content):
            return result
        assert result.structured_content["status"] in ("waiting", "running"), text_of(result)
        assert time.monotonic() < deadline, f"task {task_id} not done after {timeout} s: {text_of(result)}"
        await anyio.sleep(0.05)


# -- tools and images -------------------------------------------------------------------------------------


def test_tools_are_listed_with_schemas_that_quote_the_servers_limits(server_factory):
    server = server_factory("--max-side", "1536")

    async def scenario():
        async with mcp_session("--server", server.url) as session:
            return {tool.name: tool for tool in (await session.list_tools()).tools}

    tools = run(scenario)
    assert set(tools) == TOOLS
    generate = tools["generate_image"].input_schema
    assert generate["required"] == ["prompt"]
    assert set(generate["properties"]) >= {"prompt", "width", "height", "steps", "seed", "model", "negative_prompt",
                                           "format", "wait_seconds"}  # fmt: skip
    assert all(spec.get("description") for spec in generate["properties"].values())
    assert "1536" in generate["properties"]["width"]["description"]  # read from /api/info at start
    assert {"PNG", "JPEG", "WEBP"} <= set(generate["properties"]["format"]["anyOf"][0]["enum"])
    assert "get_task" in tools["generate_image"].description  # the handle behaviour is explained
    assert tools["get_task"].input_schema["required"] == ["task_id"]
    assert tools["list_models"].annotations.read_only_hint is True


@pytest.mark.parametrize(
    ("format", "mime", "pil_format"), [("PNG", "image/png", "PNG"), ("jpeg", "image/jpeg", "JPEG")]
)
def test_generate_image_returns_the_image_of_the_asked_size(server_factory, format, mime, pil_format):
    server = server_factory()
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def scenario():
        async with mcp_session("--server", server.url) as session:
            arguments = {"prompt": "a red fox in the snow", "width": 320, "height": 192, "steps": 8, "seed": 7,
                         "format": format}  # fmt: skip
            return await session.call_tool("generate_image", arguments, progress_callback=on_progress)

    result = run(scenario)
    assert not result.is_error, text_of(result)
    image, mime_type = image_of(result)
    assert (image.format, mime_type, image.size) == (pil_format, mime, (320, 192))
    text = text_of(result)
    facts = result.structured_content
    assert facts["task_id"] in text and "seed 7" in text and "320×192" in text and " s:" in text
    assert (facts["seed"], facts["width"], facts["height"], facts["status"]) == (7, 320, 192, "done")
    # The image was handed over: the server deleted it.
    assert server.get("/api/image", params={"task_id": facts["task_id"]}).status_code == 404
    # Progress, if any was sent before the task finished, only ever increases (as the spec demands).
    assert [p for p, _, _ in progress] == sorted({p for p, _, _ in progress})


def test_a_short_wait_returns_a_handle_and_get_task_fetches_the_image_later(server_factory):
    server = server_factory()

    async def scenario():
        async with mcp_session("--server", server.url) as session:
            arguments = {"prompt": "a lighthouse", "width": 1536, "height": 1536, "steps": 20, "wait_seconds": 0.05}
            handle = await session.call_tool("generate_image", arguments)
            task_id = handle.structured_content["task_id"]
            kept = await poll_get_task(session, task_id, keep=True)
            again = await session.call_tool("get_task", {"task_id": task_id})  # fetches and deletes
            gone = await session.call_tool("get_task", {"task_id": task_id})
            return handle, kept, again, gone

    handle, kept, again, gone = run(scenario)
    assert not handle.is_error and not any(block.type == "image" for block in handle.content)
    facts = handle.structured_content
    assert facts["status"] in ("waiting", "running") and facts["wait_remaining"] >= 0
    text = text_of(handle)
    assert facts["task_id"] in text and "get_task" in text and "s left" in text
    for result in (kept, again):
        assert not result.is_error, text_of(result)
        assert image_of(result)[0].size == (1536, 1536)
    assert kept.structured_content["kept"] is True and again.structured_content["kept"] is False
    assert gone.is_error and "already fetched and deleted" in text_of(gone)


def test_get_task_can_wait_for_the_task_and_reports_progress(server_factory):
    server = server_factory()
    task_id = server.generate("a slower one", width=1536, height=1536, steps=30)  # a few seconds
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def scenario():
        async with mcp_session("--server", server.url) as session:
            arguments = {"task_id": task_id, "wait_seconds": 30}
            return await session.call_tool("get_task", arguments, progress_callback=on_progress)

    result = run(scenario)
    assert not result.is_error, text_of(result)
    assert image_of(result)[0].size == (1536, 1536)
    assert progress, "no progress notification while the task ran"
    done = [p for p, _, _ in progress]
    assert done == sorted(set(done))  # strictly increasing: seconds waited so far
    assert all(total >= p for p, total, _ in progress)  # total: that plus the forecast of the seconds left
    assert all(task_id in message for _, _, message in progress)


def test_cancel_task_stops_a_long_task(server_factory):
    server = server_factory()

    async def scenario():
        async with mcp_session("--server", server.url) as session:
            handle = await session.call_tool("generate_image", {"prompt": "a slow one", **LONG, "wait_seconds": 0})
            task_id = handle.structured_content["task_id"]
            cancelled = await session.call_tool("cancel_task", {"task_id": task_id})
            after = await session.call_tool("get_task", {"task_id": task_id})
            twice = await session.call_tool("cancel_task", {"task_id": task_id})
            return handle, cancelled, after, twice

    handle, cancelled, after, twice = run(scenario)
    task_id = handle.structured_content["task_id"]
    assert "Queued" in text_of(handle)
    assert not cancelled.is_error and f"Cancelled task {task_id}" in text_of(cancelled)
    assert cancelled.structured_content["cancelled"] is True
    assert server.wait_status(task_id, "cancelled", timeout=30)["status"] == "cancelled"
    assert after.is_error and "cancelled" in text_of(after)
    assert not twice.is_error and "already ended" in text_of(twice)


def test_a_call_the_client_gives_up_on_cancels_its_task(server_factory):
    """The client's timeout sends notifications/cancelled: nobody knows the task id, so it is not rendered."""
    server = server_factory()

    async def scenario():
        async with mcp_session("--server", server.url) as session:
            with pytest.raises(MCPError, match="timed out"):
                await session.call_tool("generate_image", {"prompt": "abandoned", **LONG}, read_timeout_seconds=3)

    run(scenario)
    tasks = wait_for(lambda: server.get("/api/tasks").json(), 30, what="the task to be listed")
    assert len(tasks) == 1
    assert server.wait_status(tasks[0]["task_id"], "cancelled", timeout=30)["status"] == "cancelled"


# -- models ---------------------------------------------------------------------------------------------


def test_list_models_lists_the_servers_models_and_unknown_ones_are_refused(server_factory):
    server = server_factory()

    async def scenario():
        async with mcp_session("--server", server.url) as session:
            listed = await session.call_tool("list_models", {})
            unknown = await session.call_tool("generate_image", {"prompt": "x", "model": "no-such-model"})
            known = await session.call_tool("generate_image", {"prompt": "x", "model": "demo", "width": 64,
                                                               "height": 64})  # fmt: skip
            return listed, unknown, known

    listed, unknown, known = run(scenario)
    assert not listed.is_error, text_of(listed)
    models = listed.structured_content["models"]
    assert [(m["name"], m["default"]) for m in models] == [
        ("demo", True), ("demo-fast", False), ("demo-slow", False), ("demo-edit", False), ("demo-upscale", False),
    ]  # fmt: skip
    assert models[0]["loaded"] is True and models[0]["steps"] == 4
    assert "demo-slow" in text_of(listed) and "2560" in text_of(listed) and "loaded" in text_of(listed)
    assert unknown.is_error and "no-such-model" in text_of(unknown) and "demo" in text_of(unknown)
    assert not known.is_error and image_of(known)[0].size == (64, 64)
    assert server.get("/api/tasks").json() == []  # the unknown model was refused before anything was queued


def test_list_models_uses_api_ls_when_the_server_has_it():
    info = {"model": "schnell", "label": "FLUX.1 schnell", "default_steps": 4, "max_side": 2048}
    listing = {"schnell": {"quantize": 8}, "dev": {"quantize": 4}}

    async def scenario(url: str):
        async with mcp_session("--server", url) as session:
            return await session.call_tool("list_models", {})

    with stub_server({"/api/info": (200, info), "/api/ls": (200, listing)}) as url:
        result = run(lambda: scenario(url))
    assert not result.is_error, text_of(result)
    assert result.structured_content["models"] == [
        {"name": "schnell", "default": True, "quantize": 8},
        {"name": "dev", "default": False, "quantize": 4},
    ]
    assert "- schnell (the default" in text_of(result) and "- dev" in text_of(result)


# -- errors ---------------------------------------------------------------------------------------------


def test_invalid_width_is_a_tool_error_naming_width(server_factory):
    server = server_factory()

    async def scenario():
        async with mcp_session("--server", server.url) as session:
            return await session.call_tool("generate_image", {"prompt": "x", "width": 10})

    result = run(scenario)
    assert result.is_error
    assert "width" in text_of(result) and "422" in text_of(result)


def test_a_full_queue_is_a_tool_error_saying_when_to_retry(server_factory):
    server = server_factory("--max-waiting", "1")
    running = server.generate("blocker", **LONG)
    server.wait_status(running, "running", timeout=30)
    server.generate("waiting", **LONG)  # the one waiting task allowed

    async def scenario():
        async with mcp_session("--server", server.url) as session:
            return await session.call_tool("generate_image", {"prompt": "one too many"})

    result = run(scenario)
    assert result.is_error
    assert "queue is full (429)" in text_of(result) and "Retry after" in text_of(result)


def test_api_keys(server_factory):
    server = server_factory(env={"MFLUX_SERVER_API_KEY": "the-right-key"}, start=False)
    server.start(wait_ready=False)  # the fixture's readiness probe has no key
    bearer = {"Authorization": "Bearer the-right-key"}
    wait_for(lambda: server.get("/api/health", headers=bearer).json().get("model_loaded"), 60, what="the engine")

    async def scenario():
        async with mcp_session("--server", server.url, "--api-key", "a-wrong-key") as session:
            wrong = await session.call_tool("generate_image", {"prompt": "x"})
        async with mcp_session("--server", server.url) as session:
            missing = await session.call_tool("list_models", {})
        async with mcp_session("--server", server.url, env={"MFLUX_SERVER_API_KEY": "the-right-key"}) as session:
            right = await session.call_tool("generate_image", {"prompt": "x", "width": 64, "height": 64})
        return wrong, missing, right

    wrong, missing, right = run(scenario)
    assert wrong.is_error and "401" in text_of(wrong) and "is not the server's" in text_of(wrong)
    assert missing.is_error and "401" in text_of(missing) and "MFLUX_SERVER_API_KEY" in text_of(missing)
    assert not right.is_error, text_of(right)
    assert image_of(right)[0].size == (64, 64)


def test_an_unreachable_server_is_a_tool_error_naming_its_url():
    url = f"http://127.0.0.1:{unused_port()}"

    async def scenario():
        async with mcp_session("--server", url) as session:  # starts regardless: the server may come up later
            tools = {tool.name for tool in (await session.list_tools()).tools}
            results = [await session.call_tool(name, arguments) for name, arguments in [
                ("generate_image", {"prompt": "x"}), ("get_task", {"task_id": "abc"}),
                ("cancel_task", {"task_id": "abc"}), ("list_models", {}),
            ]]  # fmt: skip
            return tools, results

    tools, results = run(scenario)
    assert tools == TOOLS
    for result in results:
        assert result.is_error
        assert f"The mflux-server at {url} cannot be reached" in text_of(result)


def test_unknown_task_and_invalid_arguments_are_tool_errors(server_factory):
    server = server_factory()

    async def scenario():
        async with mcp_session("--server", server.url) as session:
            unknown = await session.call_tool("get_task", {"task_id": "0000000000000000"})
            no_prompt = await session.call_tool("generate_image", {"width": 512})
            bad_format = await session.call_tool("generate_image", {"prompt": "x", "format": "GIF"})
            return unknown, no_prompt, bad_format

    unknown, no_prompt, bad_format = run(scenario)
    assert unknown.is_error and "0000000000000000" in text_of(unknown)
    assert no_prompt.is_error and "prompt" in text_of(no_prompt)
    assert bad_format.is_error and "format" in text_of(bad_format)


def test_generate_image_starts_from_a_picture_on_the_agents_machine(server_factory, tmp_path):
    """image (a path, or base64) and mask reach the server; outside the mask the result is the picture."""
    server = server_factory()
    picture = tmp_path / "start.png"
    Image.new("RGB", (256, 128), (200, 40, 40)).save(picture)
    mask = Image.new("L", (256, 128), 0)
    mask.paste(255, (0, 0, 128, 128))
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")

    async def scenario():
        async with mcp_session("--server", server.url) as session:
            made = await session.call_tool("generate_image", {
                "prompt": "a hat", "image": str(picture), "mask": base64.b64encode(buffer.getvalue()).decode(),
                "image_strength": 0.0, "format": "PNG",
            })  # fmt: skip
            wrong = await session.call_tool("generate_image", {"prompt": "x", "image": "/no/such/file.png"})
            return made, wrong

    made, wrong = run(scenario)
    assert not made.is_error, text_of(made)
    image, _ = image_of(made)
    assert image.size == (256, 128)  # the picture's size
    assert image.convert("RGB").getpixel((200, 64)) == (200, 40, 40)  # kept outside the mask
    assert wrong.is_error and "image: not a file" in text_of(wrong)
