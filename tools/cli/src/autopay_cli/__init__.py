"""The shipped `autopay` command: administration, stream provisioning, parse-mail."""
