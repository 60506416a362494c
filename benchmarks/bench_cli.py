"""``toolreg`` start-up time: ``--help`` and a shell completion against a bare interpreter.

Runs each command as a real subprocess N times, interleaved (one of each per
round, so background load hits every command alike), and reports the median
wall time of each (and its CPU time, which waiting for a core on a loaded
machine does not inflate), and its excess over ``python -c pass`` (the
interpreter's own start, the raw baseline measured in the same rounds). The
target: under 0.3 s for ``toolreg --help`` and ``toolreg tools list --help``::

    .venv/bin/python -m benchmarks.bench_cli                 # 21 rounds
    .venv/bin/python -m benchmarks.bench_cli --rounds 51 --strict
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

from benchmarks._support import TOOLREG

TARGET_SECONDS = 0.3

COMMANDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "python -c pass (raw)": ([sys.executable, "-c", "pass"], {}),
    "toolreg --help": ([TOOLREG, "--help"], {}),
    "toolreg tools list --help": ([TOOLREG, "tools", "list", "--help"], {}),
    "toolreg tools show --help": ([TOOLREG, "tools", "show", "--help"], {}),
    # What the shell runs on <TAB> after `toolreg tools l`.
    "completion `toolreg tools l<TAB>`": (
        [TOOLREG],
        {
            "_TOOLREG_COMPLETE": "complete_bash",
            "COMP_WORDS": "toolreg tools l",
            "COMP_CWORD": "2",
        },
    ),
}
CHECKED = ("toolreg --help", "toolreg tools list --help")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(argv: list[str], extra_env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run. CPU time leaves out the time
    spent waiting for a core, which on a loaded machine is most of the wall time."""
    env = {**os.environ, "COLUMNS": "100", **extra_env}
    cpu, started = _cpu(), time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started, _cpu() - cpu


def measure(rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Each command's (wall, CPU) times, one run of every command per round, after a
    warm-up run of each."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for argv, env in COMMANDS.values():
        _time(argv, env)  # warm-up: bytecode caches and the page cache
    for _ in range(rounds):
        for name, (argv, env) in COMMANDS.items():
            times[name].append(_time(argv, env))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="runs of each command")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    times = measure(args.rounds)
    raw = statistics.median(wall for wall, _ in times["python -c pass (raw)"])
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.rounds} rounds")
    print()
    print("| command | median wall | min wall | median CPU | wall over `python -c pass` | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    missed = []
    for name, runs in times.items():
        median = statistics.median(wall for wall, _ in runs)
        fastest = min(wall for wall, _ in runs)
        cpu = statistics.median(cpu for _, cpu in runs)
        target = ""
        if name in CHECKED:
            ok = median < TARGET_SECONDS
            target = f"< {TARGET_SECONDS:g} s: {'pass' if ok else 'MISS'}"
            if not ok:
                missed.append(name)
        over = "-" if name.endswith("(raw)") else f"+{(median - raw) * 1000:.0f} ms"
        print(
            f"| `{name}` | {median * 1000:.0f} ms | {fastest * 1000:.0f} ms "
            f"| {cpu * 1000:.0f} ms | {over} | {target} |"
        )
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
