"""Gerrit: the SSH connection, event parsing and the command lines we send."""
