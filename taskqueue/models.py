"""What the server does with each model right now: offered or not, weights present, loaded, failed, and what a
switch to it would cost, for the listings (/api/ls, /v1/models, A1111's sd-models, the web UI's picker)."""

from __future__ import annotations

from dataclasses import dataclass

from core.models import Catalog, ModelInfo, model_of
from taskqueue.forecast import Forecaster
from taskqueue.scheduler import Scheduler


@dataclass(frozen=True)
class ModelListing:
    info: ModelInfo
    offered: bool  # clients may ask for it
    present: bool  # its weights are on this machine (or it has been loaded since the start)
    default: bool  # tasks that name no model run it
    loaded: bool  # warm: a task for it starts without a load
    loading: bool
    load_error: str | None  # why it cannot be loaded, if it failed to
    switch_seconds: float  # what a switch to it adds (0 when loaded): its learned (or guessed) load time
    learned: int  # images of it the forecaster has learned from


def listing(model: ModelInfo, catalog: Catalog, scheduler: Scheduler, forecaster: Forecaster) -> ModelListing:
    workers, default = scheduler.workers(), scheduler.default_variant
    variants = [key for state in workers for key in state.warm if model_of(key) == model.name]
    loading = any(state.loading is not None and model_of(state.loading[0]) == model.name for state in workers)
    errors = [error for key, error in scheduler.load_errors().items() if model_of(key) == model.name]
    return ModelListing(
        info=model,
        offered=model.name in catalog.offered,
        present=model.name in catalog.present or model.name in scheduler.ever_loaded or model.is_demo,
        default=model.name == default.model,
        loaded=bool(variants),
        loading=loading,
        load_error=errors[0] if errors else None,
        switch_seconds=0.0 if variants else forecaster.load_seconds(model.name),
        learned=forecaster.observations(model.name),
    )
