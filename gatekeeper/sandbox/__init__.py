"""The Gerrit simulator and the all-in-one demo behind ``gatekeeper sandbox``."""
