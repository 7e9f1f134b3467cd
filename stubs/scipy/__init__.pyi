# The parts of scipy gatekeeper uses (scipy ships no types).
