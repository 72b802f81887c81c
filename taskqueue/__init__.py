"""The queue core: tasks, their durable store, the scheduler that feeds the worker, and the forecaster."""
