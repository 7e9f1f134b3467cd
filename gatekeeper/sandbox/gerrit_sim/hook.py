"""The ``commit-msg`` hook the simulator serves at ``hooks/commit-msg``
(``scp -p -P PORT user@host:hooks/commit-msg .git/hooks/``), as Gerrit does.

Written for the simulator: it adds a ``Change-Id: I<40 hex>`` trailer to a
commit message that has none, with ``git interpret-trailers`` placing it
(so it joins an existing trailer block, and git's comment lines are kept
out of the way). The id hashes the author, committer, message and the
clock, so two commits never share one.
"""

from __future__ import annotations

COMMIT_MSG_HOOK = r"""#!/bin/sh
# commit-msg hook from gatekeeper's Gerrit simulator: give the commit a
# Change-Id trailer when it has none, so Gerrit can tie patch sets together.
set -e
message="$1"
if grep -q '^Change-Id: *I[0-9a-f]\{40\} *$' "$message"; then
  exit 0
fi
# An empty message (only blank or comment lines): git will refuse the
# commit anyway; leave it untouched.
if ! grep -v '^#' "$message" | grep -q '[^[:space:]]'; then
  exit 0
fi
id=$({
  git var GIT_AUTHOR_IDENT
  git var GIT_COMMITTER_IDENT
  cat "$message"
  date +%s%N
} | git hash-object --stdin)
git interpret-trailers --in-place --trailer "Change-Id: I$id" "$message"
"""
