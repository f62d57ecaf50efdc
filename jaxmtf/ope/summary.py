"""What `launch.ope` prints: one table of every estimate and the warnings a reader must not miss.

The table has one line per (estimator, policy) of the rows averaged over FQE
seeds (`fqe_seed` None): the policy the row estimates (a deterministic
target's smoothed form, "gaussian(0.2) of X"), the estimate, its bootstrap
interval, the effective sample size of the weights behind it, the share of
the policy's actions outside the data's support, and the simulator's truth
of that same policy where known.

Warnings: an estimate that rests on fewer than MIN_EFFECTIVE_EPISODES
effective episodes (Kish's ESS of its weights; for `mis` the per-step ESS),
and a policy with more than OUTSIDE_SUPPORT_WARNING of its action mass
outside the behaviour's support (ope/support.py), where IS drops that mass
and FQE extrapolates.
"""
import sys
from typing import Any, Dict, List

MIN_EFFECTIVE_EPISODES = 10.0
OUTSIDE_SUPPORT_WARNING = 0.05


def _mean_rows(rows) -> List[Dict[str, Any]]:
    return [r for r in rows if r.get("fqe_seed") is None]


def _number(x, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def table(rows) -> str:
    """The rows (averaged over FQE seeds) as a fixed-width text table."""
    header = ("estimator", "policy", "estimate", "CI", "ESS", "outside", "truth")
    lines = []
    for r in sorted(_mean_rows(rows), key=lambda r: (r["estimator"], r.get("evaluated_policy", r["policy"]))):
        level = int(round(100 * r.get("ci_level", 0.95)))
        lines.append((
            r["estimator"], r.get("evaluated_policy", r["policy"]), _number(r["estimate"]),
            f"{level}% [{_number(r['ci_low'])}, {_number(r['ci_high'])}]", _number(r.get("ess"), ".1f"),
            _number(r.get("outside_support"), ".1%"), _number(r.get("true_discounted")),
        ))
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines])


def warnings(rows) -> List[str]:
    """One line per policy whose estimates rest on too few effective episodes (the estimators named, each with
    its ESS) and one per policy acting outside the data's support."""
    out, thin, outside = [], {}, {}
    for r in _mean_rows(rows):
        policy = r.get("evaluated_policy", r["policy"])
        ess = r.get("ess")
        if ess is not None and ess < MIN_EFFECTIVE_EPISODES:
            thin.setdefault(policy, []).append(f"{r['estimator']} ({ess:.1f})")
        share = r.get("outside_support")
        if share is not None and share > OUTSIDE_SUPPORT_WARNING:
            outside[policy] = share
    for policy, names in thin.items():
        out.append(f"{policy}: {', '.join(names)} rest on fewer than {MIN_EFFECTIVE_EPISODES:g} effective episodes; "
                   "those estimates and intervals are unreliable")
    for policy, share in outside.items():
        out.append(f"{policy}: {share:.1%} of its actions fall outside the behaviour's support; IS and DR miss that "
                   "mass and FQE extrapolates there")
    return out


def print_summary(result: Dict[str, Any], file=None) -> None:
    """The table, the warnings and each estimator's picks (and top-k scores with a simulator) of an OPE result."""
    file = file or sys.stdout
    print(table(result["rows"]), file=file)
    for name, entry in result["report"]["estimators"].items():
        sel, scores = entry["selection"], entry.get("scores", {})
        extra = ""
        if scores:
            k = scores["top_k"]
            extra = (f"; top-{k}: true best {scores[f'best@{k}']:.4g}, worst {scores[f'worst@{k}']:.4g}, "
                     f"mean {scores[f'mean@{k}']:.4g}, regret {scores[f'regret@{k}']:.3g}")
        print(f"{name}: picks {sel['by_estimate']} (by estimate), {sel['by_lower_bound']} (by lower bound){extra}",
              file=file)
    for line in result["report"].get("warnings", []):
        print(f"WARNING: {line}", file=file)
