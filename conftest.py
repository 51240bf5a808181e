pytest_plugins = ["autopay_testing.fixtures"]
