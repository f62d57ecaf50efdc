"""How every throughput figure in benchmarks/ is timed: the best of a few windows.

The machines these run on are shared, and a single window absorbs whatever
else ran meanwhile; the best window is the figure least disturbed (timeit's
rule). Each window runs whole steps until it has lasted `window_seconds`.
"""
import time
from typing import Callable, Dict


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
