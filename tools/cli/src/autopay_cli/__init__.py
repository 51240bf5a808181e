"""The autopay command: dev stack, admin, parse-mail, provisioning."""
