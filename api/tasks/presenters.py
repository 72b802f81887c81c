"""Turn the queue's views of tasks into the JSON shapes the /api endpoints document."""

from __future__ import annotations

from taskqueue.service import TaskView


def status_of(view: TaskView) -> dict:
    task = view.task
    progress = view.progress
    return {
        "task_id": None if view.anonymous else task.id,
        "status": task.status.value,
        "pos": view.position or 0,
        "wait_remaining": round(view.wait_remaining, 3),
        "progress": {"step": progress.step, "steps": progress.steps} if progress else None,
        "error": task.error,
        "model": task.variant.key,
        "loading_model": view.loading,
        "worker": task.worker,
    }


# What a user key is shown of another key's task in the queue (the service decides whose is whose): where it
# stands and what it costs, nothing that says what it draws or could fetch, follow or cancel it.
ANONYMOUS = {"task_id": None, "prompt": None, "negative_prompt": None, "seed": None, "error": None, "worker": None,
             "guidance": None, "start_time": None, "compute_time": None, "end_time": None, "render_end_time": None,
             "input_images": None, "image_strength": None, "masked": None}  # fmt: skip


def task_of(view: TaskView) -> dict:
    listed = _task_of(view) | {"anonymous": view.anonymous}
    return listed | ANONYMOUS if view.anonymous else listed


def _task_of(view: TaskView) -> dict:
    task, params = view.task, view.task.params
    return status_of(view) | {
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "seed": params.seed,
        "width": params.width,
        "height": params.height,
        "steps": params.steps,
        "guidance": params.guidance,
        "format": task.output.format.value,
        "quality": task.output.quality,
        "priority": task.priority,
        "engine": task.engine,
        "demo": task.engine == "demo",
        "start_time": task.submitted_at,
        "compute_time": task.started_at,
        "end_time": task.ended_at,
        "render_end_time": task.rendered_at,
        "attempts": task.attempts,
        "input_images": params.input_pictures,
        "image_strength": params.image_strength,
        "masked": params.masked,
    }


def submission_of(view: TaskView) -> dict:
    params = view.task.params
    return {
        "model": view.task.variant.key,
        "task_id": view.task.id,
        "task_length": view.tasks_ahead,
        "expected_time_seconds": round(view.wait_remaining, 3),
        "status": view.task.status.value,
        "seed": params.seed,
        "width": params.width,
        "height": params.height,
        "steps": params.steps,
        "guidance": params.guidance,
    }
