"""Configuration: the site file (``gatekeeper.yaml``) and ``layout.yaml``."""
