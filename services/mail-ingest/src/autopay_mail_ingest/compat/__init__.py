"""The one place per third-party library where mail-ingest relies on its internals, each with a
test (`tests/test_compat_*.py`) that fails loudly when the pinned behaviour changes."""
