"""The query-side values: one filter parser per surface, both building the same filter."""

from __future__ import annotations

import pytest

from ragserve.errors import ConfigError
from ragserve.query import SEARCH_MODES, SearchFilter, filter_from_flags, filter_from_mapping


def test_flags_and_api_mapping_build_the_same_filter() -> None:
    flags = filter_from_flags(["kind=guide", "kind=api", "url_prefix=https://d/serve/"])
    mapping = filter_from_mapping({"kind": ["guide", "api"], "url_prefix": "https://d/serve/"})

    assert (
        flags
        == mapping
        == SearchFilter(equals={"kind": ["guide", "api"]}, url_prefix="https://d/serve/")
    )


def test_a_flag_without_equals_sign_says_how_to_write_it() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        filter_from_flags(["kind"])


def test_no_request_filters_mean_no_filter() -> None:
    assert filter_from_mapping(None) is None
    assert filter_from_mapping({}) is None
    assert filter_from_flags([]).is_empty()


def test_search_modes_list_every_mode() -> None:
    assert SEARCH_MODES == ("hybrid", "dense", "sparse")
