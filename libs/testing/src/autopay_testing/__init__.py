"""Real servers on free loopback ports, for tests and for the local dev stack."""
