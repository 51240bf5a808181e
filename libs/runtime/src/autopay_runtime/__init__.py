"""Shared run-time plumbing for AutoPay services (no business logic here)."""
