"""Bank notification parsers (Uzcard, Humo, forwarders), trust policy, synthetic mail."""
