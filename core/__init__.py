"""The ground floor: the words every layer speaks (tasks, requests, rules, engines, errors).

Nothing here imports anything of ours, so `api → taskqueue → worker → core` runs one way (DESIGN.md).
"""

__version__ = "0.2.0"  # the one version number: setup.cfg reads it from here
