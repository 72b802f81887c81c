"""Image engines behind one small interface; see `base.Engine`."""

from worker.engines.base import EngineConfig, EngineInfo, describe_engine, load_engine

__all__ = ["EngineConfig", "EngineInfo", "describe_engine", "load_engine"]
