"""Why builds fail, from the builds table and the log archive.

Provider correlation (failure rates per provider, an exact test against the
others), flaky jobs (failed, then passed on the same patch set and the same
changes ahead), and known failures (the site's RE2 signatures, matched in a
failed build's logs). Read by the web's insights pages, ``gatekeeper
insights``, the metrics and the reports; written by the worker (matches)
after a build fails. Below the pool (which may stop allocating on a failing
provider) and above the database.
"""
