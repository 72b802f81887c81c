"""The planner's rule, as properties: priority first, then first come; grouping by loaded variant saves switches
and never overtakes a task by more than the bounds (tasks and seconds); the plan agrees with the scheduler's pick."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from taskqueue.planner import Costs, Fairness, Lane, Queued, extend, pick, plan, preference

LOAD = 10.0


class FlatCosts(Costs):
    """Seconds = 1 + MP × steps; loading any variant: LOAD seconds; no prompt cache, no warm-up."""

    def task_seconds(self, task: Queued, cached: bool, first_after_load: bool, lane: str = "local") -> float:
        return 1.0 + task.megapixels * task.steps

    def load_seconds(self, variant: str, cost_key: str, lane: str = "local") -> float:
        return LOAD


COSTS = FlatCosts()


def seconds(task: Queued) -> float:
    return COSTS.task_seconds(task, False, False)


def queued(index: int, variant: str, priority: bool = False, steps: int = 4) -> Queued:
    return Queued(f"t{index:03d}", index, priority, variant, variant, 1.0, steps, f"p{index}")


def in_queue_order(tasks: list[Queued]) -> list[Queued]:
    return sorted(tasks, key=lambda t: (not t.priority, t.seq))


TASKS = st.lists(st.tuples(st.sampled_from("ABC"), st.booleans(), st.integers(1, 8)), min_size=1, max_size=40).map(
    lambda rows: [queued(i, v, p, s) for i, (v, p, s) in enumerate(rows)]
)
FAIRNESS = st.builds(Fairness, st.integers(0, 6), st.floats(0.0, 60.0))


def switches(order: list[Queued], warm: str | None) -> int:
    count = 0
    for task in order:
        if task.variant != warm:
            count += 1
            warm = task.variant
    return count


@given(tasks=TASKS, fairness=FAIRNESS, warm=st.sampled_from(["A", "B", None]))
@settings(max_examples=300, deadline=None)
def test_grouping_saves_switches_and_stays_within_its_bounds(tasks, fairness, warm):
    queue = in_queue_order(tasks)
    lane = Lane("w", (warm,) if warm else ())
    made = plan(queue, [lane], COSTS, fairness)
    order = [next(t for t in queue if t.id == task_id) for task_id in made.order]
    assert sorted(t.id for t in order) == sorted(t.id for t in queue), "every task is planned once"
    assert switches(order, warm) <= switches(queue, warm), "grouping added switches"
    position = {task.id: index for index, task in enumerate(order)}
    for task in queue:
        ahead = [o for o in order if position[o.id] < position[task.id]]
        overtakers = [o for o in ahead if o.priority == task.priority and o.seq > task.seq]
        assert len(overtakers) <= fairness.max_overtakes
        assert sum(seconds(o) for o in overtakers) <= fairness.max_overtake_seconds + 1e-9
        if task.priority:  # a priority task is never overtaken by a normal one
            assert not [o for o in ahead if not o.priority]
    for first, second in zip(made.order, made.order[1:], strict=False):
        assert made.entries[first].end <= made.entries[second].start + 1e-9


@given(tasks=TASKS, fairness=FAIRNESS, warm=st.sampled_from(["A", "B", "C"]))
@settings(max_examples=200, deadline=None)
def test_the_plan_starts_with_what_the_scheduler_would_pick(tasks, fairness, warm):
    queue = in_queue_order(tasks)
    chosen = pick(queue, [warm], fairness, seconds)
    made = plan(queue, [Lane("w", (warm,))], COSTS, fairness)
    assert chosen is not None and made.order[0] == chosen.task.id


def test_one_variant_runs_in_queue_order_priority_first():
    queue = in_queue_order([queued(0, "A"), queued(1, "A", priority=True), queued(2, "A"), queued(3, "A", True)])
    made = plan(queue, [Lane("w", ("A",))], COSTS, Fairness())
    assert made.order == ["t001", "t003", "t000", "t002"]
    assert not any(entry.switch for entry in made.entries.values())
    assert [made.entries[i].position for i in made.order] == [0, 1, 2, 3]


def test_an_alternating_queue_is_grouped_and_a_cold_model_loads_once():
    queue = [queued(i, "AB"[i % 2]) for i in range(6)]  # A B A B A B, with A loaded
    made = plan(queue, [Lane("w", ("A",))], COSTS, Fairness(max_overtakes=8, max_overtake_seconds=1000))
    assert made.order == ["t000", "t002", "t004", "t001", "t003", "t005"]
    assert [made.entries[i].switch for i in made.order] == [False, False, False, True, False, False]
    assert made.entries["t001"].start == made.entries["t004"].end + LOAD  # the load is in the forecast


def test_the_bounds_force_the_switch():
    queue = [queued(0, "B"), *(queued(i, "A") for i in range(1, 6))]  # B waits, five A tasks behind it
    by_count = plan(queue, [Lane("w", ("A",))], COSTS, Fairness(max_overtakes=2, max_overtake_seconds=1000))
    assert by_count.order[:3] == ["t001", "t002", "t000"]
    by_seconds = plan(queue, [Lane("w", ("A",))], COSTS, Fairness(max_overtakes=99, max_overtake_seconds=10.0))
    assert by_seconds.order[:3] == ["t001", "t002", "t000"]  # 5 s each: a third would pass 10 s
    strict = plan(queue, [Lane("w", ("A",))], COSTS, Fairness(max_overtakes=0))
    assert strict.order[0] == "t000"


def test_a_normal_task_never_overtakes_a_priority_one():
    queue = in_queue_order([queued(0, "B", priority=True), queued(1, "A")])
    assert pick(queue, ["A"], Fairness(), seconds).task.id == "t000"


def test_two_loaded_variants_need_no_switch_between_them():
    queue = [queued(i, "AB"[i % 2]) for i in range(4)]
    made = plan(queue, [Lane("w", ("A", "B"), max_loaded=2)], COSTS, Fairness())
    assert made.order == ["t000", "t001", "t002", "t003"]
    assert not any(entry.switch for entry in made.entries.values())


class CachingCosts(Costs):
    """Like FlatCosts, but a cached prompt saves half a second and the first image after a load costs two more:
    what a plan extended in place must get right, as a plan made again does."""

    def task_seconds(self, task: Queued, cached: bool, first_after_load: bool, lane: str = "local") -> float:
        return 1.0 + task.megapixels * task.steps - 0.5 * cached + 2.0 * first_after_load

    def load_seconds(self, variant: str, cost_key: str, lane: str = "local") -> float:
        return LOAD


JOINS = st.lists(
    st.tuples(st.sampled_from("AAAB"), st.booleans(), st.integers(1, 8), st.sampled_from(["p", "q", "r", None])),
    min_size=2,
    max_size=40,
)


@given(rows=JOINS, planned=st.integers(0, 40), lanes=st.sampled_from([1, 1, 2]), fresh=st.booleans(),
       prompts=st.sampled_from([(), ("p",), tuple("stuvwxyz")]), mixed=st.booleans())  # fmt: skip
@settings(max_examples=400, deadline=None)
def test_tasks_joining_a_plan_get_the_places_a_new_plan_would_give_everyone(rows, planned, lanes, fresh, prompts,
                                                                            mixed):  # fmt: skip
    """Priority tasks joining a long queue put everyone behind them later; the plan takes them in without being
    made again (so a submission stays fast), and every task's place and time is what planning again gives."""
    tasks = [
        Queued(f"t{i:03d}", i, priority, variant if mixed else "A", "A", 0.25, steps, key or f"own{i}")
        for i, (variant, priority, steps, key) in enumerate(rows)
    ]
    costs = CachingCosts()
    workers = [Lane(f"w{n}", ("A",), prompts={"A": prompts}, fresh=frozenset("A" if fresh else ())) for n in
               range(lanes)]  # fmt: skip
    before, joining = tasks[: planned % len(tasks)], tasks[planned % len(tasks) :]
    made = plan(in_queue_order(before), workers, costs, Fairness())
    if not extend(made, joining, costs):
        return  # it said to plan again: nothing to compare
    again = plan(in_queue_order(tasks), workers, costs, Fairness())
    for task in tasks:
        got, expected = made.get(task.id), again.get(task.id)
        assert (got.lane, got.position, got.switch) == (expected.lane, expected.position, expected.switch)
        assert abs(got.start - expected.start) < 1e-9 and abs(got.end - expected.end) < 1e-9


def test_a_priority_task_joins_a_queue_of_one_model_without_planning_again():
    queue = [queued(i, "A", priority=i % 5 == 0) for i in range(40)]
    made = plan(in_queue_order(queue), [Lane("w", ("A",))], COSTS, Fairness())
    urgent = queued(40, "A", priority=True)
    assert extend(made, [urgent], COSTS)
    assert made.get(urgent.id).position == 8  # behind the eight priority tasks, ahead of every normal one
    assert made.get("t001").position == 9 and made.get("t001").start == made.get(urgent.id).end


class LaneSpeeds(Costs):
    """Workers of different speeds: FlatCosts divided by each lane's speed."""

    SPEED = {"air": 1.0, "pro": 2.0, "ultra": 4.0}

    def task_seconds(self, task: Queued, cached: bool, first_after_load: bool, lane: str = "local") -> float:
        return (1.0 + task.megapixels * task.steps) / self.SPEED[lane]

    def load_seconds(self, variant: str, cost_key: str, lane: str = "local") -> float:
        return LOAD / self.SPEED[lane]


def test_of_idle_workers_the_plan_gives_each_task_to_the_one_the_scheduler_would():
    """The plan once gave a task to the first idle worker in its list, the scheduler to the one done soonest: the
    forecast of a task that an Ultra ran in 0.5 s said 2 s, an Air's time (issue 13's unequal workers)."""
    costs = LaneSpeeds()
    lanes = [Lane(name, ("A",)) for name in ("air", "pro", "ultra")]
    queue = [queued(i, "A") for i in range(4)]
    made = plan(queue, lanes, costs, Fairness())
    assert [made.get(f"t00{i}").lane for i in range(3)] == ["ultra", "pro", "air"]
    assert made.get("t003").lane == "ultra"  # done first again, at 1.25 s

    busy = [Lane("air", ("A",)), Lane("pro", ("A",)), Lane("ultra", ("A",), free_in=30.0, busy=True)]
    few = plan([queued(0, "A")], busy, costs, Fairness())
    assert extend(few, [queued(1, "A")], costs)
    assert (few.get("t000").lane, few.get("t001").lane) == ("pro", "air")
    preferred = preference(queued(0, "A"), False, 1.0)
    assert preferred < preference(queued(0, "A"), False, 2.0) < preference(queued(0, "A"), True, 0.5)
