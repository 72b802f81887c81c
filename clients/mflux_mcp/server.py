"""The MCP server: declares the tools (names, argument schemas, descriptions an LLM can act on) over tools.py.

The descriptions quote the limits of the server this process talks to, read from GET /api/info at start
(`ServerInfo`), because an agent that knows "64 to 2560 px, multiples of 16" picks valid sizes the first
time. If the server could not be asked, they quote its defaults and say so.
"""

# No `from __future__ import annotations` here: the SDK evaluates the tools' annotations to build their input
# schemas, and the argument types below are local to build_server (they quote the server's limits).

from importlib import metadata
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BeforeValidator, Field

from mflux_mcp.follow import ProgressReporter
from mflux_mcp.settings import ServerInfo, Settings
from mflux_mcp.tools import Tools

MAX_SEED = 2**32 - 1


def _upper(value: object) -> object:
    """Formats in any case, as the server accepts them ("png" is what an LLM will often write)."""
    return value.upper() if isinstance(value, str) else value


def build_server(settings: Settings, info: ServerInfo | None = None, tools: Tools | None = None) -> MCPServer:
    info = info or ServerInfo()
    tools = tools or Tools(settings)
    # The SDK sets up logging (to stderr) here, at this level.
    mcp = MCPServer(
        "mflux-server-mcp",
        version=_version(),
        instructions=_instructions(settings, info),
        log_level=settings.log_level,
    )
    model_default = f" (now {info.model})" if info.model else ""
    of_server = "" if info.known else " (the server's defaults; it could not be asked when this MCP server started)"
    wait_default = f"{settings.wait_seconds:g}"

    Width = Annotated[
        int | None,
        Field(
            description=f"Image width in pixels, {info.min_side} to {info.max_side}, rounded down to a multiple of "
            f"{info.size_step}; width × height at most {info.max_pixels:,} pixels{of_server}. Default 1024."
        ),
    ]
    Height = Annotated[int | None, Field(description=f"Image height in pixels; the same rules as width{of_server}.")]
    Steps = Annotated[
        int | None,
        Field(
            description=f"Denoising steps, 1 to {info.max_steps}. Default: the model's"
            + (f" ({info.default_steps})" if info.default_steps else "")
            + ". More steps give finer detail and take proportionally longer."
        ),
    ]
    Seed = Annotated[
        int | None,
        Field(
            ge=0,
            le=MAX_SEED,
            description=f"Random seed, 0 to {MAX_SEED}. Default: a random one; the answer says which was used.",
        ),
    ]
    Model = Annotated[
        str | None, Field(description=f"A model name from list_models. Default: the server's model{model_default}.")
    ]
    negative_note = ""
    if info.supports_negative_prompt is not None:
        negative_note = f" ({info.model}: {'supported' if info.supports_negative_prompt else 'not supported'})"
    NegativePrompt = Annotated[
        str | None,
        Field(description=f"What the image should not show; only some models use it{negative_note}."),
    ]
    Format = Annotated[
        Literal["PNG", "JPEG", "WEBP"] | None,
        BeforeValidator(_upper),
        Field(description="Image file format. Default: JPEG (smallest); PNG is lossless but several times larger."),
    ]
    Image = Annotated[
        str | None,
        Field(
            description="A picture to start from: a file path on this machine, or the image as base64 (a data: "
            "URL too). A text-to-image model keeps image_strength of it; an edit model (list_models: kind edit) "
            "changes it as the prompt says; an upscale model enlarges it. Without width and height the result "
            "takes its size."
        ),
    ]
    Strength = Annotated[
        float | None,
        Field(ge=0, le=1, description="With an image and a text-to-image model: the share of it kept (default 0.4)."),
    ]
    Mask = Annotated[
        str | None,
        Field(description="With an image: where to repaint, white (the rest stays the image exactly); a path or "
              "base64, like image."),
    ]  # fmt: skip
    Wait = Annotated[
        float | None,
        Field(
            ge=0,
            description=f"Seconds to wait for the image before returning a task handle instead (default "
            f"{wait_default}). 0 returns the handle at once, e.g. to queue several images before fetching any.",
        ),
    ]

    @mcp.tool(
        description=_generate_description(settings, info),
        annotations=ToolAnnotations(title="Generate an image", read_only_hint=False, open_world_hint=False),
    )
    async def generate_image(
        prompt: Annotated[
            str,
            Field(
                min_length=1,
                description="What the image should show, in plain words (at most "
                f"{info.max_prompt_chars:,} characters). Describe subject, setting, style, lighting and composition.",
            ),
        ],
        ctx: Context,
        width: Width = None,
        height: Height = None,
        steps: Steps = None,
        seed: Seed = None,
        model: Model = None,
        negative_prompt: NegativePrompt = None,
        format: Format = None,  # shadows the builtin: it is the server's own field name
        image: Image = None,
        image_strength: Strength = None,
        mask: Mask = None,
        wait_seconds: Wait = None,
    ) -> CallToolResult:
        return await tools.generate_image(
            prompt, width=width, height=height, steps=steps, seed=seed, model=model, negative_prompt=negative_prompt,
            format=format, image=image, image_strength=image_strength, mask=mask, wait_seconds=wait_seconds,
            on_status=ProgressReporter(ctx.report_progress),
        )  # fmt: skip

    @mcp.tool(
        description=(
            "Check on a task that generate_image returned as a handle (not finished in time), and fetch its image "
            "once it is done. Answers with the task's state (waiting with its queue position, running with its "
            "step, and the seconds left) or, when done, the image. Fetching deletes the image from the server "
            "unless keep is true. A task that failed or was cancelled is reported as an error."
        ),
        annotations=ToolAnnotations(title="Get a task's state or image", read_only_hint=False, open_world_hint=False),
    )
    async def get_task(
        task_id: Annotated[str, Field(min_length=1, description="The task_id that generate_image returned.")],
        ctx: Context,
        keep: Annotated[
            bool, Field(description="Keep the image on the server after fetching it (default false: delete it).")
        ] = False,
        wait_seconds: Annotated[
            float,
            Field(
                ge=0,
                description="Wait up to this many seconds for the task to finish before answering (default 0: "
                f"answer at once). Up to about {wait_default} s is safe for most MCP clients.",
            ),
        ] = 0.0,
    ) -> CallToolResult:
        return await tools.get_task(
            task_id, keep=keep, wait_seconds=wait_seconds, on_status=ProgressReporter(ctx.report_progress)
        )

    @mcp.tool(
        description=(
            "Cancel a task: a waiting one leaves the queue, a running one stops at its next step. A task that has "
            "already ended is left as it is (a finished image can still be fetched with get_task)."
        ),
        annotations=ToolAnnotations(
            title="Cancel a task", read_only_hint=False, destructive_hint=True, idempotent_hint=True
        ),
    )
    async def cancel_task(
        task_id: Annotated[str, Field(min_length=1, description="The task_id of the task to cancel.")],
    ) -> CallToolResult:
        return await tools.cancel_task(task_id)

    @mcp.tool(
        description=(
            "List the image models the mflux-server offers, which one is the default, and the server's limits "
            "(sizes, steps, formats) for generate_image."
        ),
        annotations=ToolAnnotations(title="List models", read_only_hint=True, open_world_hint=False),
    )
    async def list_models() -> CallToolResult:
        return await tools.list_models()

    return mcp


def _version() -> str:
    """The mflux-server distribution's version, which this package ships in; unknown when run from a checkout."""
    try:
        return metadata.version("mflux-server")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _generate_description(settings: Settings, info: ServerInfo) -> str:
    model = ""
    if info.model:
        model = f" (model {info.model}" + (f": {info.label}" if info.label else "") + ")"
    return (
        f"Generate an image from a text prompt on the mflux-server{model} and return it, with a caption giving "
        "the task id, seed, size and seconds taken. Only prompt is required; the rest default to the server's "
        "settings. The server renders one image at a time for all its clients, so a call takes seconds to "
        "minutes (larger sizes and more steps take longer). If the image is not ready within wait_seconds "
        f"(default {settings.wait_seconds:g} s), the call returns a task handle instead: then call get_task "
        "with its task_id to fetch the image, or cancel_task to drop it. The same prompt, seed and size "
        "reproduce an image; another seed gives a variation."
    )


def _instructions(settings: Settings, info: ServerInfo) -> str:
    demo = (
        " This server runs the demo engine: its images are procedural test patterns, not pictures of the prompt."
        if info.demo
        else ""
    )
    return (
        f"Generates images with the mflux-server at {settings.server_url}, a queue shared by many clients.{demo} "
        "Use generate_image; if it answers with a task handle instead of an image, call get_task with the "
        "task_id later (or with wait_seconds). list_models tells the models and limits."
    )
