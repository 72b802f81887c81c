"""Which models' weights are already on this machine: in the Hugging Face cache at the revision mflux pins, or
at a path the operator gave. A request never starts a tens-of-GB download the operator did not allow."""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


def cached_revisions() -> dict[str, set[str]]:
    """Every repo in the local Hugging Face cache, with the commits it holds (empty when there is no cache)."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception as error:  # no cache directory yet, or an unreadable one: nothing is present
        log.debug("no Hugging Face cache to scan: %s", error)
        return {}
    return {repo.repo_id: {revision.commit_hash for revision in repo.revisions} for repo in info.repos}


def present(repos: Iterable[tuple[str, str, str | None]], cache: dict[str, set[str]]) -> set[str]:
    """The names (of (name, repo, pinned revision) triples) whose pinned revision is cached."""
    found = set()
    for name, repo, revision in repos:
        commits = cache.get(repo)
        if commits and (revision is None or any(commit.startswith(revision) for commit in commits)):
            found.add(name)
    return found
