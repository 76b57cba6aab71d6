"""The HTTP service: the app, config loading, the status page, pass-throughs to gateways."""
