"""How every throughput figure in benchmarks/ is timed: the best of a few windows.

The machines these run on are shared, and a single window absorbs whatever
else ran meanwhile; the best window is the figure least disturbed (timeit's
rule). Each window runs whole steps until it has lasted `window_seconds`.
"""
import time
from typing import Callable, Dict, Sequence


def best_rate(step: Callable[[], None], work_per_step: float, window_seconds: float,
              windows: int = 3) -> Dict[str, float]:
    """{"rate": best work/s over `windows` windows, "steps": steps timed, "seconds": time timed}."""
    best, total_steps, total_seconds = 0.0, 0, 0.0
    for _ in range(windows):
        steps, start = 0, time.perf_counter()
        while True:
            step()
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= window_seconds:
                break
        best = max(best, steps * work_per_step / elapsed)
        total_steps, total_seconds = total_steps + steps, total_seconds + elapsed
    return {"rate": best, "steps": total_steps, "seconds": total_seconds}


def best_rates_interleaved(steps: Sequence[Callable[[], None]], work_per_step: float, window_seconds: float,
                           rounds: int = 3) -> list:
    """The best rate of each step over `rounds` rounds; a round times every step once, in turn, so a
    slow spell of a shared machine falls on all of them alike rather than on the ones timed during it."""
    best = [0.0] * len(steps)
    for _ in range(rounds):
        for i, step in enumerate(steps):
            best[i] = max(best[i], best_rate(step, work_per_step, window_seconds, windows=1)["rate"])
    return best
