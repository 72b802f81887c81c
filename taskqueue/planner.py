"""Which waiting task runs next, and when each one will: the one rule for choosing, and the plan it makes.

The rule (`pick`): priority tasks first, then first come, first served, except that a task whose variant is
already loaded may run before older tasks that would need a switch (a load of tens of seconds), so that a queue
alternating between models does not reload on every task. That unfairness is bounded: a task is never overtaken
by more than `max_overtakes` later tasks, nor by more than `max_overtake_seconds` of their work; once either bound
would be passed, the oldest task runs and the switch happens. Priority tasks are never overtaken by normal ones.

The scheduler asks `pick` for the engine's next task; the forecasts come from `plan`, which applies the same `pick`
to the whole queue and every worker (`Lane`), switching when the rule says so. Both are pure: queue, workers and
costs come in as arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Queued:
    """A waiting task as the planner sees it."""

    id: str
    seq: int
    priority: bool
    variant: str  # Variant.key: tasks of one variant run without a load between them
    cost_key: str  # what the forecaster learns costs under (the model, and its quantization)
    megapixels: float
    steps: int  # denoising steps that will run
    prompt_key: str  # equal for equal prompts: mflux's prompt cache skips their text encoding
    overtaken: int = 0
    overtaken_seconds: float = 0.0
    attempts: int = 0  # runs so far: above 0, it is a re-run after a worker died
    model: str = ""  # the model's name: a worker on another machine may run only some models


@dataclass(frozen=True)
class Fairness:
    max_overtakes: int = 8
    max_overtake_seconds: float = 300.0


@dataclass(frozen=True)
class Choice:
    task: Queued
    overtakes: tuple[Queued, ...] = ()  # the older tasks it goes ahead of (each gets an overtaking counted)


class Costs:
    """What the planner needs of the forecaster: seconds on a worker's engine, and seconds to load there."""

    def task_seconds(self, task: Queued, cached: bool, first_after_load: bool, lane: str) -> float:
        raise NotImplementedError

    def load_seconds(self, variant: str, cost_key: str, lane: str) -> float:
        raise NotImplementedError


def pick(
    queue: Iterable[Queued],
    warm: Iterable[str],
    fairness: Fairness,
    cost: Callable[[Queued], float],
    can_run: Callable[[Queued], bool] | None = None,
) -> Choice | None:
    """The task a worker holding the `warm` variants runs next, from the waiting tasks in queue order (those it
    `can_run`: a worker on another machine may have only some models; the others are not its to skip)."""
    warm = set(warm)
    tasks = iter(queue) if can_run is None else (task for task in queue if can_run(task))
    head = next(tasks, None)
    if head is None or head.variant in warm or not warm:
        return None if head is None else Choice(head)
    skipped = [head]
    for task in tasks:
        if task.priority != head.priority:
            break  # a priority head is never overtaken by a normal task
        if task.variant not in warm:
            skipped.append(task)
            continue
        seconds = cost(task)
        allowed = all(
            s.overtaken < fairness.max_overtakes and s.overtaken_seconds + seconds <= fairness.max_overtake_seconds
            for s in skipped
        )
        return Choice(task, tuple(skipped)) if allowed else Choice(head)
    return Choice(head)


@dataclass
class Lane:
    """A worker as the planner sees it."""

    name: str
    warm: tuple[str, ...]  # loaded variants, the least recently used first
    max_loaded: int = 1
    free_in: float = 0.0  # seconds until it can start another task
    busy: bool = False  # it holds a task now
    prompts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # variant → recent prompt keys
    fresh: frozenset[str] = frozenset()  # variants loaded that have not rendered yet: their first image warms up
    available: bool = True  # it can take work (alive, not halted)
    models: frozenset[str] | None = None  # the models it can run (None: all)


@dataclass(frozen=True)
class Planned:
    lane: str
    position: int  # waiting tasks planned to start before it
    start: float  # seconds from the lane's being free until the task starts (its load included before it)
    end: float  # ... until its pixels are done
    switch: bool  # a load precedes it


@dataclass
class Plan:
    """Where every waiting task goes. A priority task joining it goes in with `extend`; the normal tasks behind
    it then start `shift` seconds and places later than their entries say (moving each would cost as much as
    planning again; one tuple, so a reader never sees the seconds without the places)."""

    entries: dict[str, Planned]
    order: list[str]
    tails: dict[str, _LaneState]  # where each lane ends, for tasks that join the end of the queue
    busy: dict[str, bool]
    variants: set[str] = field(default_factory=set)  # every variant planned for or warm in a lane
    tasks: dict[str, Queued] = field(default_factory=dict)
    priority_end: _LaneState | None = None  # one lane only: where it is when its priority tasks are done
    priorities: int = 0  # the priority tasks `order` starts with
    shift: tuple[float, int] = (0.0, 0)

    def get(self, task_id: str) -> Planned | None:
        entry = self.entries.get(task_id)
        seconds, places = self.shift
        if entry is None or not places or self.tasks[task_id].priority:
            return entry
        return Planned(entry.lane, entry.position + places, entry.start + seconds, entry.end + seconds, entry.switch)

    def _add(self, task: Queued, planned: Planned) -> None:
        """A normal task at the end (its entry kept in the terms of the tasks planned before any shift)."""
        seconds, places = self.shift
        self.entries[task.id] = Planned(planned.lane, planned.position - places, planned.start - seconds,
                                        planned.end - seconds, planned.switch)  # fmt: skip
        self.order.append(task.id)
        self.tasks[task.id] = task
        self.variants.add(task.variant)


@dataclass
class _LaneState:
    name: str
    warm: list[str]
    max_loaded: int
    at: float  # seconds after the lane's free moment (its own clock)
    offset: float  # when the lane is free, from now
    prompts: dict[str, list[str]]
    fresh: set[str]
    models: frozenset[str] | None = None

    def can_run(self, task: Queued) -> bool:
        return self.models is None or task.model in self.models

    def clock(self) -> float:
        return self.offset + self.at

    def copy(self) -> _LaneState:
        prompts = {variant: list(keys) for variant, keys in self.prompts.items()}
        return dataclasses.replace(self, warm=list(self.warm), prompts=prompts, fresh=set(self.fresh))


PROMPT_MEMORY = 8  # prompts a model's cache holds (mflux-server bounds it: worker/engines/mflux/model.py)


def plan(queue: list[Queued], lanes: list[Lane], costs: Costs, fairness: Fairness) -> Plan:
    """Every waiting task's place: which worker, when it starts and ends, whether a load comes first.

    Simulated as the workers would run it: whichever worker is free first takes its `pick`, loads if it must
    (letting go of its least recently used variant), and is busy for the task's forecast time."""
    states = [_start(lane) for lane in lanes if lane.available] or [_start(Lane("none", ()))]
    remaining = _Remaining(queue)
    entries: dict[str, Planned] = {}
    order: list[str] = []
    priorities, priority_end = 0, None
    while remaining:
        # The first free worker that can run something takes its pick; of several free at once, the one the
        # scheduler would choose.
        choices: list[tuple[_LaneState, Choice]] = []
        for state in sorted(states, key=_LaneState.clock):
            if choices and state.clock() > choices[0][0].clock() + SAME_MOMENT:
                break
            cost = lambda t, s=state: _seconds(t, s, costs, switch=False)  # noqa: E731
            if (found := pick(remaining, state.warm, fairness, cost, state.can_run)) is not None:
                choices.append((state, found))
        if not choices:
            break
        if len(choices) > 1:
            choices.sort(key=lambda c: _preference(c[1].task, c[0], costs))
        state, choice = choices[0]
        task = choice.task
        if task.priority:
            priorities += 1
        elif priority_end is None and len(states) == 1:
            priority_end = state.copy()
        switch = task.variant not in state.warm
        remaining.take(task, choice.overtakes, _seconds(task, state, costs, switch) if choice.overtakes else 0.0)
        start = state.at + (costs.load_seconds(task.variant, task.cost_key, state.name) if switch else 0.0)
        end = start + _seconds(task, state, costs, switch)
        entries[task.id] = Planned(state.name, len(order), start, end, switch)
        order.append(task.id)
        _advance(state, task, switch, end)
    variants = {task.variant for task in queue} | {variant for lane in lanes for variant in lane.warm}
    if priority_end is None and len(states) == 1:
        priority_end = states[0].copy()
    return Plan(entries, order, {s.name: s for s in states}, {lane.name: lane.busy for lane in lanes}, variants,
                {task.id: task for task in queue}, priority_end, priorities)  # fmt: skip


def extend(existing: Plan, tasks: Iterable[Queued], costs: Costs) -> bool:
    """Add tasks that joined the queue since it was planned, if that changes nobody's turn but theirs: normal
    tasks at the end, priority tasks after the priority tasks, of the one variant everything planned uses
    (grouping cannot move them ahead). False, with the plan unchanged from that task on, when it takes more:
    plan again."""
    for task in tasks:
        if task.id in existing.entries:
            continue
        if not existing.variants <= {task.variant}:
            return False
        if task.priority:
            if not _join_priority(existing, task, costs):
                return False
            continue
        capable = [tail for tail in existing.tails.values() if tail.can_run(task)]
        if len(capable) != len(existing.tails):
            return False  # not every worker could take it: where it goes is the plan's to say
        first = min(capable, key=_LaneState.clock)
        free = [tail for tail in capable if tail.clock() <= first.clock() + SAME_MOMENT]
        state = min(free, key=lambda tail: _preference(task, tail, costs)) if len(free) > 1 else first
        switch = task.variant not in state.warm
        start = state.at + (costs.load_seconds(task.variant, task.cost_key, state.name) if switch else 0.0)
        end = start + _seconds(task, state, costs, switch)
        existing._add(task, Planned(state.name, len(existing.order), start, end, switch))
        _advance(state, task, switch, end)
    return True


def _join_priority(existing: Plan, task: Queued, costs: Costs) -> bool:
    """Put a priority task after the plan's priority tasks, on its one lane, and every normal task one task's time
    later; if the lane holds the task's variant, warm, and the normal tasks find their prompts cached as before."""
    boundary = existing.priority_end
    if boundary is None or not boundary.can_run(task) or task.variant not in boundary.warm:
        return False
    if task.variant in boundary.fresh:
        return False  # the first image after a load is slower: it would move from a normal task to this one
    seconds = _seconds(task, boundary, costs, switch=False)
    joined = boundary.copy()
    _advance(joined, task, False, boundary.at + seconds)
    behind = (existing.tasks[task_id] for task_id in existing.order[existing.priorities :])
    prompts = _prompts_behind(boundary.prompts.get(task.variant, []), joined.prompts[task.variant], behind)
    if prompts is None:
        return False
    existing.entries[task.id] = Planned(boundary.name, existing.priorities, boundary.at, boundary.at + seconds, False)
    existing.order.insert(existing.priorities, task.id)
    existing.tasks[task.id] = task
    existing.priorities += 1
    if len(existing.order) == existing.priorities:  # nothing behind: the lane ends where the task does
        existing.tails[boundary.name] = joined.copy()
    else:
        tail = existing.tails[boundary.name]
        tail.at += seconds
        if prompts is not _UNCHANGED:
            tail.prompts[task.variant] = prompts
        existing.shift = (existing.shift[0] + seconds, existing.shift[1] + 1)
    existing.priority_end = joined
    return True


_UNCHANGED: list[str] = []  # the prompts behind end as they did


def _prompts_behind(before: list[str], after: list[str], behind: Iterable[Queued], most: int = 512) -> list[str] | None:
    """Whether the tasks `behind` (one variant) find their prompts cached just as they did when their lane held
    the recent prompts `before`, now that it holds `after`: the lane's recent prompts at their end (`_UNCHANGED`
    once the two agree again), or None when some task would be planned otherwise, or when that takes more than
    `most` tasks to tell (to plan again costs about that much)."""
    before, after = list(before), list(after)
    for count, task in enumerate(behind):
        if before == after:
            return _UNCHANGED
        if count == most or (task.prompt_key in before) != (task.prompt_key in after):
            return None
        _remember(before, task.prompt_key)
        _remember(after, task.prompt_key)
    return _UNCHANGED if before == after else after


SAME_MOMENT = 1e-9  # seconds: lanes free this close together are free at once (idle ones, mostly)


def preference(task: Queued, switch: bool, seconds: float) -> tuple[bool, int, bool, float]:
    """How the scheduler ranks what each free worker would take (lowest first): the task first in queue order,
    then one that needs no load, then the worker that is done soonest (`seconds`: the task's, and its load)."""
    return (not task.priority, task.seq, switch, seconds)


def _preference(task: Queued, state: _LaneState, costs: Costs) -> tuple[bool, int, bool, float]:
    switch = task.variant not in state.warm
    seconds = costs.task_seconds(task, False, False, state.name)  # as the scheduler counts it, which knows no more
    if switch:
        seconds += costs.load_seconds(task.variant, task.cost_key, state.name)
    return preference(task, switch, seconds)


def _start(lane: Lane) -> _LaneState:
    prompts = {variant: list(keys) for variant, keys in lane.prompts.items()}
    return _LaneState(lane.name, list(lane.warm), lane.max_loaded, 0.0, lane.free_in, prompts, set(lane.fresh),
                      lane.models)  # fmt: skip


def _seconds(task: Queued, state: _LaneState, costs: Costs, switch: bool) -> float:
    cached = task.prompt_key in state.prompts.get(task.variant, ())
    first_after_load = switch or task.variant in state.fresh
    return costs.task_seconds(task, cached and not switch, first_after_load, state.name)


def _advance(state: _LaneState, task: Queued, switch: bool, end: float) -> None:
    if switch:
        state.warm.append(task.variant)
        while len(state.warm) > state.max_loaded:
            gone = state.warm.pop(0)
            state.prompts.pop(gone, None)
            state.fresh.discard(gone)
        state.prompts[task.variant] = []
    else:
        state.warm.remove(task.variant)
        state.warm.append(task.variant)
    state.fresh.discard(task.variant)
    _remember(state.prompts.setdefault(task.variant, []), task.prompt_key)
    state.at = end


def _remember(recent: list[str], prompt_key: str) -> None:
    if prompt_key in recent:
        recent.remove(prompt_key)
    recent.append(prompt_key)
    del recent[:-PROMPT_MEMORY]


class _Remaining:
    """The tasks not planned yet, in queue order, iterable from the first: taking one is O(1), and iterating
    skips what was taken (each taken task is skipped once before the start moves past it)."""

    def __init__(self, queue: list[Queued]) -> None:
        self._tasks = queue
        self._taken: set[str] = set()
        self._first = 0
        self._overtaken: dict[str, tuple[int, float]] = {}

    def __bool__(self) -> bool:
        self._skip_taken()
        return self._first < len(self._tasks)

    def __iter__(self) -> Iterator[Queued]:
        self._skip_taken()
        for task in self._tasks[self._first :]:
            if task.id not in self._taken:
                yield self._with_overtakings(task)

    def take(self, task: Queued, overtakes: tuple[Queued, ...], seconds: float) -> None:
        """Plan `task`; each task it overtakes counts one more overtaking and `seconds` more of others' work."""
        self._taken.add(task.id)
        for skipped in overtakes:
            count, total = self._overtaken.get(skipped.id, (skipped.overtaken, skipped.overtaken_seconds))
            self._overtaken[skipped.id] = (count + 1, total + seconds)

    def _skip_taken(self) -> None:
        while self._first < len(self._tasks) and self._tasks[self._first].id in self._taken:
            self._first += 1

    def _with_overtakings(self, task: Queued) -> Queued:
        counted = self._overtaken.get(task.id)
        if counted is None:
            return task
        return dataclasses.replace(task, overtaken=counted[0], overtaken_seconds=counted[1])
