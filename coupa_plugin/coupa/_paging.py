"""Read a paged Coupa listing completely, with several pages in flight.

Coupa pages with ``limit`` (at most 50) and ``offset`` in ascending id order and never deletes
users, so offsets are stable while a listing is read. The reader does not trust the page size:
a short page is only the end when the next offset comes back empty, so a server that caps
pages below the ``limit`` asked for is read completely (the stride adapts to the cap it
observes). Once any listing of a client has been served a full page of the ``limit`` asked
for (``PageSize``), a short page of another listing is its end too: Coupa's page limit is the
same for every listing. A server that ignores ``offset`` (the same ids again) is detected and
reported instead of looping.

When the caller knows the largest id the listing can hold (``last_id``, e.g. from reading the
newest record first), no page is requested ahead past the offset where the rows still
possible run out: rows come in ascending id order with distinct integer ids, so after a row
with id ``top`` at most ``last_id - top`` rows remain. The end is still confirmed as above
(new records may have arrived); the bound only keeps speculative pages from being sent past
it, and a row above ``last_id`` voids it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from functools import partial
from typing import Any, Final

import attrs

from coupa_plugin.coupa._errors import PagingError
from coupa_plugin.coupa._transport import inherit_deadline

__all__ = ["MAX_PAGE", "PageSize", "read_all", "read_keyset"]

MAX_PAGE: Final = 50
Page = list[dict[str, Any]]


@attrs.define
class PageSize:
    """What one server has shown of its page size, shared by the listings of one client."""

    served_in_full: int = 0  # the largest ``limit`` the server has served a full page of


def read_all(  # noqa: C901 - the paging state machine, its invariants in one place
    fetch: Callable[[int, int], Page],
    executor: Executor | None,
    *,
    limit: int = MAX_PAGE,
    in_flight: int = 4,
    what: str = "listing",
    max_rows: int = 50_000_000,
    page_size: PageSize | None = None,
    saturated: Callable[[], bool] | None = None,
    last_id: int | None = None,
    start_depth: int = 2,
) -> Iterator[dict[str, Any]]:
    """Yield every row of an offset-paged listing, in order, exactly once.

    ``fetch(offset, limit)`` returns one page. The first page is read alone; once the server
    has shown how many rows it serves per page, pages are requested ahead of the one being
    consumed (with an ``executor``). The depth starts at one (``start_depth`` when the page
    size is proven and ``last_id`` bounds the listing; the whole ``in_flight`` once the rows
    still possible fit in one window) and grows, up to ``in_flight``,
    each time the consumer has to wait for a page, unless ``saturated()`` says the pacer is
    already sending at its full rate (then a deeper pipeline only queues pages that may lie
    past the end): deep enough to hide the network's latency, no deeper, so a listing costs
    few requests past its end and a fast server is not flooded with threads competing for the
    interpreter. Pages not yet started when the end shows are cancelled.

    A page shorter than the page size the server has already served in full (in this listing
    or, with a shared ``page_size``, in another) is the last one. Before that size is known, a
    short page is followed by a request at the next offset, and the listing ends only when
    that comes back empty.
    """
    stride = limit
    # the server has served a full page of ``stride`` rows
    proven = page_size is not None and page_size.served_in_full >= limit
    consumed = 0  # rows yielded so far == the offset of the next row wanted
    seen: set[Any] = set()
    pending: deque[tuple[int, Future[Page] | Page]] = deque()
    next_offset = 0

    bound = last_id  # the largest id the listing can hold, while it holds
    # With the page size proven and the last id known, no page can be sent past the end, so
    # the pipeline starts ``start_depth`` deep: as deep as the pacer's rate needs, not deeper.
    # Deeper would send a burst at once, and when workers that do not share a pacer start
    # together, every page in flight when Coupa's bucket overflows comes back 429; the burst
    # goes to the last window instead.
    depth = min(max(1, start_depth), in_flight) if proven and bound is not None else 1
    # rows still possible after the ``consumed`` ones: ids are distinct positive integers, so
    # at most ``last_id`` before the first page
    remaining: int | None = max(0, bound) if bound is not None else None

    def refill() -> None:
        nonlocal next_offset
        ahead = proven and executor is not None
        window = depth if ahead else 1
        while len(pending) < window:
            if pending and remaining is not None and next_offset > consumed + remaining:
                break  # the rows still possible end before this offset: not ahead of time
            if not ahead or executor is None:
                pending.append((next_offset, fetch(next_offset, limit)))
            else:
                page = inherit_deadline(partial(fetch, next_offset, limit))
                pending.append((next_offset, executor.submit(page)))
            next_offset += stride

    def cancel_all() -> None:
        while pending:
            _, item = pending.popleft()
            if isinstance(item, Future):
                item.cancel()

    try:
        refill()
        while pending:
            offset, item = pending.popleft()
            if isinstance(item, Future):
                if (
                    not item.done()
                    and depth < in_flight
                    and (saturated is None or not saturated())
                ):
                    # the consumer is waiting on the network: keep one more page in flight
                    depth += 1
                page = item.result()
            else:
                page = item
            if page_size is not None and len(page) == limit == stride:
                page_size.served_in_full = limit  # other listings may trust short pages now
            for row in page:
                key = row.get("id")
                if bound is not None and (not isinstance(key, int) or key > bound):
                    bound = remaining = None  # not the bound it was said to be
                if key is None:
                    raise PagingError(f"{what}: a row without an id at offset {offset}")
                if not isinstance(key, int | str) or isinstance(key, bool):
                    raise PagingError(
                        f"{what}: a row whose id is {type(key).__name__}, not a number, at "
                        f"offset {offset}"
                    )
                if key in seen:
                    raise PagingError(
                        f"{what}: id {key} came back again at offset {offset}; the server "
                        "does not page with offset, so the listing cannot be read completely"
                    )
                seen.add(key)
                yield row
            consumed += len(page)
            if bound is not None and page:
                remaining = max(0, bound - page[-1]["id"])
                if proven and remaining <= in_flight * stride:
                    # the rest fits in one window and none of it lies past the end: ask for
                    # it all at once (whatever burst the pacer has left goes here)
                    depth = in_flight
            if consumed > max_rows:
                raise PagingError(f"{what}: more than {max_rows} rows; refusing to go on")
            if not page:
                return
            if len(page) == stride:
                proven = True
            elif len(page) > stride:
                # the server ignores ``limit`` and serves more: step by what it serves (rows
                # already seen would show up as repeats, so nothing is read twice unnoticed)
                stride = len(page)
                proven = True
                cancel_all()
                next_offset = consumed
            elif proven or (
                page_size is not None and page_size.served_in_full >= limit == stride
            ):
                # short page after full ones (of this listing, or of another since this one
                # began: a listing started before the page size was known): the end
                return
            else:
                # the server serves fewer rows than asked: step by what it serves and confirm
                # the end with an empty page
                stride = len(page)
                cancel_all()
                next_offset = consumed
            refill()
    finally:
        cancel_all()


def read_keyset(
    fetch_after: Callable[[int], Page],
    *,
    what: str = "listing",
    max_pages: int = 1_000_000,
    max_rows: int = 50_000_000,
    last_id: Callable[[], int | None] = lambda: None,
) -> Iterator[dict[str, Any]]:
    """Yield every row of a listing paged by ``id > cursor`` until an empty page; at most
    ``max_rows`` rows in all (a PagingError naming the limit past that).

    ``last_id()``, asked after each page, is the largest id the listing holds when known (for
    example read with the first page): a page reaching it is the last one, so no empty page
    is asked for to confirm the end. An id above it voids it for the rest of the listing."""
    cursor, rows = 0, 0
    bound_holds = True
    for _ in range(max_pages):
        page = fetch_after(cursor)
        if not page:
            return
        rows += len(page)
        if rows > max_rows:
            raise PagingError(f"{what}: more than {max_rows} rows; refusing to go on")
        ids = [row.get("id") for row in page]
        numeric = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
        if len(numeric) != len(ids) or min(numeric) <= cursor:
            raise PagingError(
                f"{what}: the server ignored the id[gt]={cursor} cursor (got ids {ids[:5]}…)"
            )
        yield from page
        cursor = max(numeric)
        top = last_id() if bound_holds else None
        if top is not None:
            if cursor == top:
                return  # the largest id there is: nothing lies past this page
            bound_holds = cursor < top
    raise PagingError(f"{what}: no end after {max_pages} pages")
