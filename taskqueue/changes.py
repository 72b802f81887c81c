"""The change feed: counters bumped on every task state change, which waiters block on instead of polling."""

from __future__ import annotations

import threading


class ChangeFeed:
    """`version` counts every change. `others_version` leaves out new tasks joining the queue, which change no
    other task's record: what the status memo keeps is keyed on it, so that polling stays cheap while clients
    keep submitting. (Where the new tasks go in the memo's plan, and so everyone's wait, their own views put
    them: `WaitTimes` adds them to the plan or has it made again.)
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.version = 0
        self.others_version = 0

    def changed(self, *, joined: bool = False) -> None:
        with self._condition:
            self.version += 1
            if not joined:
                self.others_version += 1
            self._condition.notify_all()

    def wait(self, since: int, timeout: float, *, others: bool = False) -> int:
        """Block until `version` (with `others`: `others_version`) differs from `since`, or `timeout` seconds;
        returns that version now. A waiter that has nothing to do with new tasks waits with `others`, so that a
        stream of submissions does not wake it for nothing."""
        with self._condition:
            if others:
                self._condition.wait_for(lambda: self.others_version != since, timeout)
                return self.others_version
            self._condition.wait_for(lambda: self.version != since, timeout)
            return self.version
