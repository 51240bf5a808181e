"""AutoPay public HTTP API (AutoPayCard-compatible)."""
