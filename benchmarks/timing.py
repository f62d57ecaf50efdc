"""How every throughput figure in benchmarks/ is timed: the best of a few windows.

The machines these run on are shared, and a single window absorbs whatever
else ran meanwhile; the best window is the figure least disturbed (timeit's
rule). Each window runs whole steps until it has lasted `window_seconds`.
"""
import time
from typing import Callable, Dict, Sequence

import jax


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


def chunk_caller(fn: Callable, args: Sequence, num_carried: int) -> Callable[[], None]:
    """A no-argument call of fn's next chunk: fn returns a tuple whose first `num_carried` items are its
    next call's first arguments (the state, key... carried from chunk to chunk; a donated argument is
    consumed), and the call waits for the results."""
    args = list(args)

    def one_chunk():
        result = fn(*args)
        args[:num_carried] = result[:num_carried]
        jax.block_until_ready(result)

    return one_chunk


def first_call_seconds(one_chunk: Callable[[], None]) -> float:
    """Seconds of the first call: tracing, compilation and one chunk."""
    start = time.perf_counter()
    one_chunk()
    return time.perf_counter() - start
