"""The chaos run (`make chaos`): orders paid by bank mail on a running dev stack
while its service processes and Redis are killed, then every order checked.

`python -m autopay_devtools.chaos --state-dir DIR` drives a stack started with
`autopay dev up --detach --state-dir DIR`; its last line of output is one JSON object of
figures, and it exits 1 unless every figure that counts a violation is 0 (`checks.FAILING`).
"""
