"""The one place per third-party library where this code relies on its internals, each module
with a test (`libs/runtime/tests/test_compat_*.py`) that fails loudly when the pinned
behaviour changes."""
