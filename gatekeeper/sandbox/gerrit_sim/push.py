"""Turning a push to ``refs/for/<branch>`` into changes and patch sets.

Runs in the receive-pack server thread after ``git receive-pack`` has
accepted the push, while that thread holds the project's lock.
"""

from __future__ import annotations

import logging

from gatekeeper.sandbox.gerrit_sim import events
from gatekeeper.sandbox.gerrit_sim.git import ZERO
from gatekeeper.sandbox.gerrit_sim.state import Project, SimState

log = logging.getLogger(__name__)


def process(state: SimState, project: Project, uploader: str) -> list[str]:
    """Create changes for every pushed ``refs/for/*`` ref; return report lines.

    :raises GerritError: git failed.
    """
    repo = project.repo
    report: list[str] = []
    pending = repo.refs("refs/for/")
    for ref, tip in sorted(pending.items()):
        branch, _, options = ref[len("refs/for/") :].partition("%")
        # Gerrit's push options: refs/for/master%topic=name,r=reviewer
        topic = next((o[len("topic=") :] for o in options.split(",") if o.startswith("topic=")), "")
        commits = repo.new_commits(tip, branch) if repo.rev(f"refs/heads/{branch}") else []
        for sha in commits:
            commit = repo.commit_info(sha)
            # Write the ref and announce the patch set under the state lock, so
            # a listener that fetches on patchset-created finds the ref.
            with state.lock:
                added = state.add_patchset(project.name, branch, commit, uploader, topic)
                if added is None:
                    continue
                change, patchset = added
                repo.update_refs([(patchset.ref, sha, ZERO)])
                state.emit(events.patchset_created(state, change, patchset))
            report.append(f"  {state.change_url(change)} {commit.subject}")
            log.info("change %d patch set %d from %s", change.number, patchset.number, uploader)
        repo.update_refs([(ref, "", tip)])
    if not report:
        return ["", "no new changes", ""]
    return ["", "New Changes:", *report, ""]
