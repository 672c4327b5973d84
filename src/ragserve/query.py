"""The query-side values: how a question asks to be searched, defined once.

``SearchMode`` and ``SearchFilter`` describe a question, not a storage
backend, so the CLI, the HTTP API, the config and the stores all import them
from here; ``ragserve.store`` re-exports them for existing callers. The two
ways a filter arrives (``--filter key=value`` flags and the API's JSON object)
are parsed here too, so both surfaces build the same filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ragserve.errors import ConfigError

SearchMode = Literal["hybrid", "dense", "sparse"]

#: Every ``SearchMode``, in the order the docs list them.
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)

#: The filter key that restricts by page URL prefix instead of a payload match.
URL_PREFIX_KEY = "url_prefix"

FilterValue = str | int | bool | list[str] | list[int]


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Restrictions on which chunks a query may return.

    ``equals`` maps payload keys to a value (match) or a list (match any);
    ``url_prefix`` keeps chunks whose page URL starts with the prefix.
    """

    equals: dict[str, FilterValue] = field(default_factory=dict)
    url_prefix: str | None = None

    def is_empty(self) -> bool:
        return not self.equals and not self.url_prefix


def filter_from_mapping(filters: Mapping[str, object] | None) -> SearchFilter | None:
    """The API's ``{"key": value, "url_prefix": "..."}`` → a filter (None when unfiltered).

    Values are assumed already validated (the request schema does that).
    """
    if not filters:
        return None
    equals: dict[str, Any] = {key: value for key, value in filters.items() if key != URL_PREFIX_KEY}
    prefix = filters.get(URL_PREFIX_KEY)
    return SearchFilter(equals=equals, url_prefix=prefix if isinstance(prefix, str) else None)


def filter_from_flags(items: Iterable[str]) -> SearchFilter:
    """``key=value`` flags → a filter; a repeated key matches any of its values.

    Raises ``ConfigError`` for a flag without ``=``.
    """
    equals: dict[str, Any] = {}
    url_prefix = None
    for item in items:
        if "=" not in item:
            raise ConfigError(
                f"--filter takes key=value (got {item!r}), e.g. --filter url_prefix=https://site/docs/"
            )
        key, value = (part.strip() for part in item.split("=", 1))
        if key == URL_PREFIX_KEY:
            url_prefix = value
        elif key in equals:
            previous = equals[key]
            equals[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            equals[key] = value
    return SearchFilter(equals=equals, url_prefix=url_prefix)
