"""AutoPay's development tools, never shipped: the local stack and its `autopay dev` commands,
the benchmarks and the chaos run."""
