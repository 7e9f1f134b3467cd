"""The build executor: node claim, workspace, console, logs, archive (the node is
reached through a transport from :mod:`gatekeeper.node`)."""
