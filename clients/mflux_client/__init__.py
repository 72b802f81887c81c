"""Python client for mflux-server."""
