"""How fast an update could be if it did nothing but its matrix products: each dot of the compiled
update timed alone, at its own shapes.

XLA's CPU dots reach the matmul peak (a 2048 x 2048 product) only on large,
square-ish operands; an update's dots have a contraction of 42 inputs
(obs 32 + act 10), outputs of width 1 (a critic's last layer) or a batch of
100 rows, and reach far less. `dot_roofline` lists every dot of one compiled
update (from its optimised HLO text, with the step a constant as in
throughput.flops_per_update, so a delayed branch not taken is left out),
times each one jitted on random operands of its shapes, and sums:

  dot_gflop_per_s   the update's dot FLOPs / the summed time of its dots: the rate the update
                    would reach if everything else were free (its ceiling, as a share of the peak)
  dot_seconds       the summed time of one update's dots, to compare with the measured update time
"""
import re
import time
from collections import Counter

import jax
import jax.numpy as jnp

_DEFINITION = re.compile(r"%([\w.-]+) = (\w+)\[([\d,]*)\]\S* (\w[\w-]*)\((.*)")


def _dims(text: str, name: str) -> tuple:
    match = re.search(name + r"=\{([\d,]*)\}", text)
    return tuple(int(d) for d in match.group(1).split(",") if d) if match else ()


def dots_of(hlo_text: str) -> Counter:
    """Counter of (lhs shape, rhs shape, dimension numbers) over the f32 dots of an HLO module.

    HLO names a dot's operands without their shapes: each computation's instructions (its parameters
    included) are read into a name -> shape table first, reset at each computation's header."""
    found, shapes = Counter(), {}
    for line in hlo_text.splitlines():
        if line.rstrip().endswith("{"):  # a computation's header: its own names follow
            shapes = {}
            continue
        match = _DEFINITION.search(line)
        if not match:
            continue
        name, dtype, dims, op, rest = match.groups()
        shapes[name] = tuple(int(d) for d in dims.split(",") if d)
        if op == "dot" and dtype == "f32":
            operands = re.findall(r"%([\w.-]+)", rest.split(")")[0])
            if len(operands) == 2 and all(o in shapes for o in operands):
                numbers = ((_dims(rest, "lhs_contracting_dims"), _dims(rest, "rhs_contracting_dims")),
                           (_dims(rest, "lhs_batch_dims"), _dims(rest, "rhs_batch_dims")))
                found[(shapes[operands[0]], shapes[operands[1]], numbers)] += 1
    return found


def _flops(lhs, rhs, numbers) -> float:
    (lhs_contract, _), (lhs_batch, _) = numbers
    out = jax.eval_shape(lambda a, b: jax.lax.dot_general(a, b, numbers), jnp.zeros(lhs), jnp.zeros(rhs)).shape
    contracted = 1
    for d in lhs_contract:
        contracted *= lhs[d]
    size = 1
    for d in out:
        size *= d
    return 2.0 * size * contracted


def time_dot(lhs, rhs, numbers, min_seconds: float = 0.2) -> float:
    """Best seconds of one jitted dot_general at these shapes (random operands), over >= min_seconds."""
    a = jax.random.normal(jax.random.PRNGKey(0), lhs)
    b = jax.random.normal(jax.random.PRNGKey(1), rhs)
    dot = jax.jit(lambda x, y: jax.lax.dot_general(x, y, numbers))
    jax.block_until_ready(dot(a, b))
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        jax.block_until_ready(dot(a, b))
        best = min(best, time.perf_counter() - t)
    return best


def dot_roofline(compiled_updates) -> dict:
    """compiled_updates: one compiled update per step of the delay period; the mean over them."""
    dots = Counter()
    for compiled in compiled_updates:
        dots.update(dots_of(compiled.as_text()))
    flops = seconds = 0.0
    for (lhs, rhs, numbers), count in dots.items():
        flops += count * _flops(lhs, rhs, numbers)
        seconds += count * time_dot(lhs, rhs, numbers)
    period = len(compiled_updates)
    return {"dot_gflop_per_s": flops / seconds / 1e9 if seconds else float("nan"),
            "dot_seconds": seconds / period, "dots_per_update": sum(dots.values()) / period,
            "dot_mflop_per_update": flops / period / 1e6}
