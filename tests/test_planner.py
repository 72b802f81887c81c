"""The planner's rule, as properties: priority first, then first come; grouping by loaded variant saves switches
and never overtakes a task by more than the bounds (tasks and seconds); the plan agrees with the scheduler's pick."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from taskqueue.planner import Costs, Fairness, Lane, Queued, pick, plan

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
