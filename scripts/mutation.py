"""Mutation testing of the modules whose mistakes cost users most, with mutmut 3, end to end.

    .venv/bin/python scripts/mutation.py            # copy, mutate, test, report (about 10-20 minutes on 2 cores)
    .venv/bin/python scripts/mutation.py --report   # report again from the last run's results
    .venv/bin/python scripts/mutation.py --show     # ... with the diff of every surviving mutant

It installs nothing. mutmut must be in this Python environment: `pip install -e '.[mutation]'` (or
`pip install 'mutmut>=3.3,<4'`). The project's own setup.cfg is never touched: the script copies the work
tree (tracked files and new, unignored ones) into --workdir, writes mutmut's configuration into the copy's
setup.cfg, and runs mutmut there, against the fast in-process tests only (TESTS below). See TESTING.md for
the scores and for the surviving mutants judged harmless.

Targets (TARGETS): the task store's ordering and transitions, the API key check, the request rules, and the
image's delete-once path (TaskService.image; the store's mark_fetched is part of the store). The forecaster
(taskqueue/forecast.py) is left out while it is being rewritten.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = Path(os.environ.get("TMPDIR", "/tmp")) / "mflux-server-mutation"

# (what the report calls it, the file, the mutant names that count: fnmatch patterns on mutmut's names)
TARGETS = [
    ("taskqueue/store.py", "taskqueue/store.py", ["taskqueue.store.*"]),
    ("api/auth.py", "api/auth.py", ["api.auth.*"]),
    ("core/rules.py", "core/rules.py", ["core.rules.*"]),
    ("TaskService.image", "taskqueue/service.py", ["taskqueue.service.xǁTaskServiceǁimage__mutmut_*"]),
]
# Fast, in-process tests only: no server process, no sleeps. A mutant survives only if all of these pass.
TESTS = [
    "tests/test_queue_model.py",
    "tests/test_hot_paths.py",
    "tests/test_store_snapshot.py",
    "tests/test_api_validation.py",
    "tests/test_retention.py",
    "tests/test_status_memo.py",
    "tests/test_store_rules.py",
    "tests/test_rules.py",
    "tests/test_auth_keys.py",
    "tests/test_image_fetch.py",
    "tests/test_waits.py",
]
# Tests in those files that start real servers: too slow for every mutant, and not what they are for.
DESELECT = [
    "tests/test_retention.py::test_the_server_keeps_only_the_newest_images_and_forgets_old_tasks",
    "tests/test_retention.py::test_the_server_forgets_finished_tasks_after_the_retention_time",
]
# Packages the tests import: copied into mutmut's tree; only the TARGETS files are mutated.
SOURCE_PATHS = ["core", "api", "taskqueue", "worker", "webui"]
ALSO_COPY = ["harness", "server.py"]

TIMEOUT = 4  # mutmut's timeout_multiplier: the wall-clock bound is this many times the tests' own time
KILLED = {"killed", "timeout", "caught by type check"}
NOT_COUNTED = {"skipped"}

# Surviving mutants that change nothing a user can observe, each with why (TESTING.md explains them further).
# Keyed by mutmut's name, with a piece of the mutated line: if the source moves and the numbering with it, the
# piece no longer matches and the mutant is reported as not judged, to be looked at again.
JUDGED_HARMLESS = {
    "api.auth.x__presented_keys__mutmut_11": ('"XXXX"', "no header and 'XXXX' both have no Bearer or Basic scheme"),
    "api.auth.x_is_loopback__mutmut_3": ('"XX[]XX"', "strips a capital X too: no loopback name starts or ends with X"),
    "api.auth.x_is_loopback__mutmut_10": ('"XX[]XX"', "the same, for addresses: an IP address has no X"),
    "core.rules.x_request_problems__mutmut_15": ("required=None", "None and False are both false for the flag"),
    "taskqueue.store.x__totals_trigger__mutmut_*": (
        "",
        "runs only at import, before mutmut switches a mutant on; the triggers' sums are checked by "
        "tests/test_queue_model.py after every operation",
    ),
    "taskqueue.store.xǁTaskStoreǁ_ahead_of__mutmut_2[2-6]": (
        "first",
        "which side of the queue is summed is a cost choice: both give the same sum (tests/test_queue_model.py "
        "checks it at every position)",
    ),
    "taskqueue.store.xǁTaskStoreǁ_listed__mutmut_2[56]": ("chosen", "COUNT(*) instead of the totals: the same count"),
    "taskqueue.store.xǁTaskStoreǁ_listed__mutmut_3[789]": (
        "len(tasks)",
        "a group read at OFFSET >= its count, or with LIMIT 0, returns no rows: the same page",
    ),
    "taskqueue.store.xǁTaskStoreǁ_listed__mutmut_4[01789]": (
        "index",
        "an index hint dropped, or an alias: same rows",
    ),
    "taskqueue.store.xǁTaskStoreǁ_connection__mutmut_1[56]": (
        "sqlite3.connect",
        "SQLite's busy timeout (30 s, or the default 5 s): the store's own lock serializes its writes",
    ),
}
SQL_LITERAL = re.compile(r"'[^']*'")
# Case-only changes where case means nothing: SQL keywords and identifiers, sqlite3.Row keys, HTTP header
# names, codec names. Recognised from the mutated line itself.
CASE_INSENSITIVE = re.compile(
    r"SELECT|UPDATE|DELETE|INSERT|PRAGMA|FROM|WHERE|INDEXED BY|ORDER BY|NULL|MAX\(|COUNT\(|COALESCE"
    r'|row\["|"[a-z_]+ (?:=|>=|>|<=|<) \?"|headers\.get\(|"utf-8"'
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the copy and mutants go")
    parser.add_argument("--report", action="store_true", help="only report the results of the last run")
    parser.add_argument("--show", action="store_true", help="print the diff of every surviving mutant")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    parser.add_argument("--json", type=Path, help="also write the scores and survivors here")
    parser.add_argument("--retry-timeouts", action="store_true", help="only test the last run's timeouts again")
    args = parser.parse_args()

    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if importlib.util.find_spec("mutmut") is None or mutmut is None:
        print("mutmut is not installed in this environment; install it with\n"
              f"    {sys.executable} -m pip install -e '.[mutation]'     (or: pip install 'mutmut>=3.3,<4')",
              file=sys.stderr)  # fmt: skip
        return 2

    workdir = args.workdir.resolve()
    if (args.report or args.retry_timeouts) and not (workdir / "mutants").is_dir():
        print(f"no results in {workdir}: run without --report first", file=sys.stderr)
        return 2
    if not args.report and not args.retry_timeouts:
        prepare(workdir)
        patterns = [pattern for _, _, names in TARGETS for pattern in names]
        code = run_mutmut(mutmut, workdir, args.max_children, patterns)
        if code != 0:
            return code
    if not args.report:
        # The wall-clock bound is tight (a deadlocked mutant burns no CPU), so a busy machine can time out a
        # mutant the tests would not have killed: test every timeout again, with 5 times the time.
        timeouts = [name for name, status in read_results(workdir).items() if status == "timeout"]
        if timeouts:
            print(f"\n{len(timeouts)} timeout(s): testing them again with more time", flush=True)
            setup_cfg = workdir / "setup.cfg"
            slower = f"timeout_multiplier = {5 * TIMEOUT}"
            setup_cfg.write_text(setup_cfg.read_text().replace(f"timeout_multiplier = {TIMEOUT}", slower))
            code = run_mutmut(mutmut, workdir, args.max_children, timeouts)
            if code != 0:
                return code

    results = read_results(workdir)
    patterns = [pattern for _, _, names in TARGETS for pattern in names]
    alive = [
        name
        for name, status in results.items()
        if status not in KILLED | NOT_COUNTED and any(fnmatch.fnmatch(name, p) for p in patterns)
    ]
    report = summarise(results, mutant_diffs(workdir, mutmut, alive))
    print_report(report)
    if args.show:
        for name in report["survivors"]:
            subprocess.call([mutmut, "show", name], cwd=workdir, env=clean_env())
        print("\njudged harmless or equivalent:")
        for name, why in sorted(report["harmless"].items()):
            print(f"    {name}: {why}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


def run_mutmut(mutmut: str, workdir: Path, max_children: int, names: list[str]) -> int:
    command = [mutmut, "run", "--max-children", str(max_children), *names]
    print("$", " ".join(command[:6]), "..." if len(command) > 6 else "", f"   (in {workdir})", flush=True)
    code = subprocess.call(command, cwd=workdir, env=clean_env())
    if code != 0:
        print(f"mutmut run exited with {code}", file=sys.stderr)
    return code


def prepare(workdir: Path) -> None:
    """A fresh copy of the work tree with mutmut's configuration in its setup.cfg."""
    if workdir.exists():
        shutil.rmtree(workdir)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = workdir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    config = ["", "[mutmut]"]
    config += option("source_paths", SOURCE_PATHS)
    config += option("only_mutate", sorted({path for _, path, _ in TARGETS}))
    config += option("also_copy", ALSO_COPY)
    config += option("pytest_add_cli_args_test_selection", [t for t in TESTS if (workdir / t).exists()])
    # A fixed Hypothesis seed: the same examples for every mutant, so a score can be compared between runs.
    pytest_args = ["-p", "no:cacheprovider", "--hypothesis-seed=0", *(f"--deselect={t}" for t in DESELECT)]
    config += option("pytest_add_cli_args", pytest_args)
    # A mutant that deadlocks the store's write lock burns no CPU: a wall-clock bound of 4x the tests' time.
    config += [f"timeout_multiplier = {TIMEOUT}"]
    with (workdir / "setup.cfg").open("a") as setup_cfg:
        setup_cfg.write("\n".join(config) + "\n")


def option(name: str, values: list[str]) -> list[str]:
    return [f"{name} =", *(f"    {value}" for value in values)]


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the mutated copy must be what the tests import
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def read_results(workdir: Path) -> dict[str, str]:
    """Every mutant of the target files and its status, from mutmut's .meta files."""
    from mutmut.stats import status_by_exit_code

    results: dict[str, str] = {}
    for path in sorted({path for _, path, _ in TARGETS}):
        meta = workdir / "mutants" / f"{path}.meta"
        if not meta.exists():
            continue
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            results[name] = status_by_exit_code[code]
    return results


def summarise(results: dict[str, str], diffs: dict[str, tuple[str, str]]) -> dict:
    """Scores per target: raw (killed / all), and counting out the survivors judged harmless or equivalent."""
    modules = {}
    survivors, harmless = [], {}
    for label, _, patterns in TARGETS:
        mine = {name: status for name, status in results.items() if any(fnmatch.fnmatch(name, p) for p in patterns)}
        counts = Counter(mine.values())
        counted = sum(n for status, n in counts.items() if status not in NOT_COUNTED)
        killed = sum(n for status, n in counts.items() if status in KILLED)
        alive = sorted(name for name, status in mine.items() if status not in KILLED | NOT_COUNTED)
        judged = {name: why for name in alive if (why := judgement(name, *diffs.get(name, ("", ""))))}
        survivors += [name for name in alive if name not in judged]
        harmless |= judged
        rest = counted - len(judged)
        modules[label] = {
            "mutants": len(mine),
            "killed": killed,
            "score": round(100 * killed / counted, 1) if counted else None,
            "harmless": len(judged),
            "score_without_harmless": round(100 * killed / rest, 1) if rest else None,
            "statuses": dict(sorted(counts.items())),
        }
    counted = sum(m["mutants"] - m["statuses"].get("skipped", 0) for m in modules.values())
    killed = sum(m["killed"] for m in modules.values())
    rest = counted - len(harmless)
    total = {
        "mutants": counted,
        "killed": killed,
        "score": round(100 * killed / counted, 1) if counted else None,
        "harmless": len(harmless),
        "score_without_harmless": round(100 * killed / rest, 1) if rest else None,
    }
    return {"modules": modules, "total": total, "survivors": survivors, "harmless": harmless}


def judgement(name: str, removed: str, added: str) -> str | None:
    """Why a surviving mutant is harmless, or None if it is a gap (or has not been judged)."""
    if (
        removed != added
        and removed.lower() == added.lower()
        and CASE_INSENSITIVE.search(removed)
        and SQL_LITERAL.findall(removed) == SQL_LITERAL.findall(added)  # 'waiting' is not 'WAITING' to SQLite
    ):
        return "equivalent: only the case of SQL, a sqlite3.Row key, a header name or a codec name changed"
    for pattern, (piece, why) in JUDGED_HARMLESS.items():
        if fnmatch.fnmatchcase(name, pattern) and piece in added:
            return why
    return None


def mutant_diffs(workdir: Path, mutmut: str, names: list[str]) -> dict[str, tuple[str, str]]:
    """The changed line of each mutant (removed, added), from `mutmut show`."""
    diffs = {}
    for name in names:
        shown = subprocess.run([mutmut, "show", name], cwd=workdir, env=clean_env(), capture_output=True, text=True)
        removed = [
            line[1:] for line in shown.stdout.splitlines() if line.startswith("-") and not line.startswith("---")
        ]
        added = [line[1:] for line in shown.stdout.splitlines() if line.startswith("+") and not line.startswith("+++")]
        diffs[name] = ("\n".join(removed), "\n".join(added))
    return diffs


def print_report(report: dict) -> None:
    print()
    print(f"{'target':<22} {'mutants':>8} {'killed':>7} {'score':>7} {'harmless':>9} {'score*':>7}  other statuses")
    for label, figures in [*report["modules"].items(), ("all targets", report["total"])]:
        others = ", ".join(f"{n} {s}" for s, n in figures.get("statuses", {}).items() if s not in KILLED)
        score = "-" if figures["score"] is None else f"{figures['score']:.1f}%"
        adjusted = "-" if figures["score_without_harmless"] is None else f"{figures['score_without_harmless']:.1f}%"
        print(f"{label:<22} {figures['mutants']:>8} {figures['killed']:>7} {score:>7} {figures['harmless']:>9} "
              f"{adjusted:>7}  {others}")  # fmt: skip
    print("score*: killed / (mutants - those judged harmless or equivalent)")
    if report["survivors"]:
        print(
            "\nnot killed and not judged harmless: gaps (see them with --show, or `mutmut show NAME` in the workdir):"
        )
        for name in report["survivors"]:
            print("   ", name)
    else:
        print("\nevery surviving mutant is judged harmless or equivalent (--show lists them with why)")


if __name__ == "__main__":
    sys.exit(main())
