"""Git as gatekeeper runs it: the runner, and the checks and parsing of the
names (projects, branches, refs, ``ZUUL_CHANGES``) that reach it.

Its own room because two rooms above it run git: the workers
(:mod:`gatekeeper.worker.workspace`) and the gate's merger
(:mod:`gatekeeper.scheduler.merger`), neither of which may import the other.
"""
