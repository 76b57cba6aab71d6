"""pytest plugin: the ``fake_carrier_server`` fixture (registered via an entry point)."""
