"""`make bench`: the performance figures, measured on this machine, printed as one JSON line.

Each benchmark is a module here with `run() -> dict[str, float]`; `python -m autopay_devtools.bench`
runs them all (or those named on the command line) and prints their merged figures as the last
line of output. Ratios are taken against a baseline measured in the same run.
"""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..1)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
