"""`make bench`: the SPEC §9 figures, measured on this machine, printed as one JSON line.

Each benchmark is a module here with `run() -> dict[str, float]`; `python -m autopay_cli.bench`
runs them all (or those named on the command line) and prints their merged figures as the last
line of output. Ratios are taken against a baseline measured in the same run.
"""
