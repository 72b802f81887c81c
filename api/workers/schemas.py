"""The schema of GET /api/workers."""

from __future__ import annotations

from marshmallow import Schema, fields

STATES = ["ready", "busy", "loading", "starting", "joining", "lost", "refused", "failed"]


class WorkerSchema(Schema):
    name = fields.String(required=True, metadata={"example": "studio"})
    remote = fields.Boolean(required=True, metadata={"description": "On another machine (through the broker)."})
    host = fields.String(required=True)
    engine = fields.String(required=True)
    state = fields.String(required=True, metadata={"enum": STATES})
    warm = fields.List(fields.String(), required=True, metadata={"description": "Model variants loaded there."})
    loading = fields.String(allow_none=True, required=True)
    task_id = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "The task it renders (null: another key's, for a user key)."},
    )
    tasks_done = fields.Integer(required=True, metadata={"description": "Images rendered since it joined."})
    speed = fields.Float(
        allow_none=True,
        required=True,
        metadata={"description": "Its measured time against the catalog's priors (2: twice as slow); null: not "
                  "measured yet. The forecast learns each worker's speed per model."},
    )  # fmt: skip
    last_heartbeat = fields.Float(allow_none=True, required=True, metadata={"description": "Unix time."})
    since = fields.Float(required=True, metadata={"description": "When it joined (Unix time)."})
    error = fields.String(allow_none=True, required=True, metadata={"description": "Why it is lost, refused or "
                                                                                   "failed."})  # fmt: skip
    version = fields.String(required=True)
    step = fields.Integer(allow_none=True, required=True, metadata={"description": "Steps done of its task."})
    steps = fields.Integer(allow_none=True, required=True, metadata={"description": "Steps its task runs."})
