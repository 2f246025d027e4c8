"""The search tags of registry entries on a Hub-compatible server (``registry/SPEC.md`` 14.2):
the tags a repository carries, and the ``list_models`` filters a search sends. The client
(``ahl search``) and ``ahl serve`` (its index and catalog pages) both speak them."""

from __future__ import annotations

from .refs import base_key, check_segment


def entry_tags(base: str, task: str, name: str, architecture: str | None, head: str | None) -> list[str]:
    """The search tags of an entry (SPEC 14.2), from the fields its summary records."""
    tags = ["adapterhub-lite", f"task:{task}"]
    if architecture and architecture != "head_only":
        tags.append(f"adapter:{architecture}")
    if head:
        tags.append(head)
    tags += [f"ahl-entry:{base}/{task}/{name}", f"base_model:{base}"]
    # the tag the Hub derives from base_model + base_model_relation: adapter (a Hub id only)
    return tags if base.startswith("local/") else [*tags, f"base_model:adapter:{base}"]


def listing_filters(
    *,
    base: str | None = None,
    task: str | None = None,
    architecture: str | None = None,
    head: str | None = None,
    tag: str | None = None,
) -> list[str]:
    """The ``list_models`` filter tags of an entry search (SPEC 14.2): what ``ahl search`` sends and
    what the catalog pages pass to the same listing. ``head_only`` has no tag (filter rows by
    their summary's architecture).

    Raises:
        RefError: a task that is not a valid name.
    """
    filters = ["adapterhub-lite"]
    if base:
        filters.append(f"base_model:{base_key(base)}")
    if task:
        filters.append(f"task:{check_segment(task, 'task')}")
    if architecture and architecture != "head_only":
        filters.append(f"adapter:{architecture}")
    if head:
        filters.append(f"head:{head}")
    if tag:
        filters.append(tag)
    return filters
