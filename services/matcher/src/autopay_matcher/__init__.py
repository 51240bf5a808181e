"""Matches credits to waiting orders and expires unpaid ones."""
