"""The keyword encoder: BM25 terms plus whole code identifiers, stable everywhere."""

from __future__ import annotations

import pickle

import pytest

from ragserve.documents import SparseVector
from ragserve.store.sparse import SparseEncoder, identifier_terms

pytestmark = pytest.mark.unit

ENCODER = SparseEncoder()


def _shared_terms(query: SparseVector, document: SparseVector) -> set[int]:
    return set(query.indices) & set(document.indices)


def test_query_for_an_identifier_matches_it_more_than_its_loose_words() -> None:
    query = ENCODER.encode_query("map_batches")
    exact, loose = ENCODER.encode_documents(
        ["Call ds.map_batches(fn) on the dataset.", "First map the values, then split batches."]
    )
    assert len(_shared_terms(query, exact)) > len(_shared_terms(query, loose))


def test_identifiers_keep_their_parts_so_plain_words_still_match() -> None:
    query = ENCODER.encode_query("how many replicas")
    (document,) = ENCODER.encode_documents(["Set num_replicas=3 on the deployment."])
    assert _shared_terms(query, document)


def test_dotted_paths_match_by_their_tail() -> None:
    assert identifier_terms("@ray.serve.deployment") == [
        "ray.serve",
        "ray.serve.deployment",
        "serve.deployment",
    ]
    query = ENCODER.encode_query("what does serve.deployment do")
    (document,) = ENCODER.encode_documents(["Decorate the class with @ray.serve.deployment."])
    assert len(_shared_terms(query, document)) >= 2


def test_camel_case_identifiers_match_their_words() -> None:
    assert identifier_terms("set numReplicas") == ["numreplicas"]
    query = ENCODER.encode_query("num replicas")
    (document,) = ENCODER.encode_documents(["Pass numReplicas in the config."])
    assert len(_shared_terms(query, document)) == 2


def test_abbreviations_and_plain_words_are_not_identifiers() -> None:
    assert identifier_terms("e.g. the Dataset API, i.e. URL and HTTP") == []


def test_encoding_is_pinned_so_every_process_agrees() -> None:
    # Python's hash() is salted per process; these come from murmur3 and must never change
    # without a new SPARSE_ENCODING name (the stored index depends on them).
    assert ENCODER.encode_query("map_batches").indices == (350407992, 751262314, 2134079175)


def test_query_weights_are_one_per_distinct_term() -> None:
    query = ENCODER.encode_query("replicas replicas num_replicas")
    assert set(query.values) == {1.0}
    assert len(set(query.indices)) == len(query.indices)


def test_repeated_terms_weigh_more_in_documents() -> None:
    once, thrice = ENCODER.encode_documents(["scaling replicas", "replicas replicas replicas"])
    replica_term = (set(once.indices) & set(thrice.indices)).pop()
    weight_once = once.values[once.indices.index(replica_term)]
    weight_thrice = thrice.values[thrice.indices.index(replica_term)]
    assert weight_thrice > weight_once


def test_stopword_only_and_empty_texts_give_empty_vectors() -> None:
    assert ENCODER.encode_query("the of and") == SparseVector(indices=(), values=())
    assert ENCODER.encode_documents([""]) == [SparseVector(indices=(), values=())]


def test_indices_are_sorted_unique_uint32() -> None:
    (document,) = ENCODER.encode_documents(["ray.data.Dataset.map_batches map batches Map"])
    assert list(document.indices) == sorted(set(document.indices))
    assert all(0 <= index < 2**32 for index in document.indices)


def test_encoder_survives_pickling_for_ray_workers() -> None:
    ENCODER.encode_query("warm up the model")
    clone = pickle.loads(pickle.dumps(ENCODER))
    text = "Use Dataset.map_batches with batch_size=64."
    assert clone.encode_documents([text]) == ENCODER.encode_documents([text])
    assert clone.encode_query(text) == ENCODER.encode_query(text)
