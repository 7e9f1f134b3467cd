"""The build executor: node claim, workspace, transport, console, logs, archive."""
