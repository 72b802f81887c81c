"""GET /api/workers."""

from __future__ import annotations

import dataclasses

from flask.views import MethodView

from api.context import caller, service
from api.smorest import ApiBlueprint
from api.workers.schemas import WorkerSchema

blp = ApiBlueprint("workers", __name__, url_prefix="/api", description="The workers that render the images.")


@blp.route("/workers")
class Workers(MethodView):
    @blp.response(200, WorkerSchema(many=True))
    def get(self):
        """Every worker: this server's own and those on other machines (`--broker`): state, loaded models, the
        task it renders and its progress, images done, learned speed, last heartbeat; lost and refused ones with
        why. To a user key, another key's task has no id here (its progress shows)."""
        return [dataclasses.asdict(worker) | {"warm": list(worker.warm)} for worker in service().workers(caller())]
