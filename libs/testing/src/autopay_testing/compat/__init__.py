"""The one place per third-party library where the test harness relies on its internals, each
with a test (`libs/testing/tests/test_compat_*.py`) that fails loudly when it changes."""
