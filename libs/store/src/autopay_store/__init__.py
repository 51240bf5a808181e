"""AutoPay's Redis state, shared by the gateway, the matcher, the notifier and the admin CLI.

Every key lives under a configurable prefix. Keys that one atomic script touches together share
a Redis Cluster hash tag: one tag per card, `{c:<mailbox_id>:<card_last4>}`,
so a card's scripts run on one Cluster node.
"""
