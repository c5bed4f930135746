"""The accuracy gate catches a fault at one sequence length that a corpus mean hides."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from include.inference.gate import accuracy_gate, length_probes
from include.inference.runtime import TextEncoder


def _vector(text: str) -> np.ndarray:
    rng = np.random.default_rng(abs(hash(text)) % 2**32)
    return rng.standard_normal(16).astype(np.float32)


def reference(texts: Sequence[str]) -> np.ndarray:
    return np.stack([_vector(t) for t in texts])


def test_probes_have_exactly_the_asked_lengths(make_encoder: Callable[..., TextEncoder]) -> None:
    encoder = make_encoder(max_length=200)
    probes = length_probes(encoder, range(1, 129))
    assert sorted(probes) == list(range(3, 129))  # one word + [CLS] + [SEP] is the shortest
    ids, errors = encoder.tokenize([probes[n] for n in sorted(probes)])
    assert errors == {}
    assert [len(seq or []) for seq in ids] == list(range(3, 129))


def test_the_gate_fails_a_fault_at_exactly_32_tokens(make_encoder: Callable[..., TextEncoder]) -> None:
    probes = length_probes(make_encoder(max_length=200), range(8, 129))
    at_32 = probes[32]

    def faulty(texts: Sequence[str]) -> np.ndarray:
        out = reference(texts)
        for i, t in enumerate(texts):
            if t == at_32:
                out[i] = out[i] + 0.6 * np.linalg.norm(out[i]) * _vector("noise") / np.linalg.norm(
                    _vector("noise")
                )
        return out

    result = accuracy_gate(faulty, reference, probes)
    assert not result.passed
    assert result.failing_lengths == [32]
    assert result.worst_length == 32
    assert result.mean_cosine > 0.99  # the mean alone would have let it through


def test_the_gate_passes_a_close_candidate(make_encoder: Callable[..., TextEncoder]) -> None:
    probes = length_probes(make_encoder(max_length=200), range(8, 129))

    def close(texts: Sequence[str]) -> np.ndarray:
        return reference(texts) * 1.001 + 1e-4

    result = accuracy_gate(close, reference, probes)
    assert result.passed
    assert result.failing_lengths == []
    assert result.min_cosine >= 0.9999
