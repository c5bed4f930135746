"""The accuracy gate: a candidate encoder (INT8, bf16) against the f32 reference over a length sweep.

A lower-precision model is accepted only if, for every probe text, the cosine between its
embedding and the reference's is at least ``threshold``. Probes cover every token length of
the sweep (8..128 by default), because faults can be length-specific: OpenVINO 2026.4.1's
INT8 model in bf16 mode returns wrong embeddings at exactly 32 tokens (cosine 0.86), which
a mean over a corpus hides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from include.inference.runtime import TextEncoder

EmbedFn = Callable[[Sequence[str]], "NDArray[np.float32]"]
#: Common support words, one token each in a BERT vocabulary: the gate's probe texts are built from them.
PROBE_WORDS = [
    "order",
    "refund",
    "shipping",
    "account",
    "password",
    "invoice",
    "delivery",
    "charge",
    "card",
    "package",
    "late",
    "damaged",
    "login",
    "error",
    "update",
    "app",
    "crash",
    "return",
    "label",
    "warehouse",
    "courier",
    "address",
    "payment",
]


class GateResult(BaseModel):
    """What the gate measured.

    :param passed: every probe reached ``threshold``.
    :param threshold: the cosine every probe needed.
    :param min_cosine: the worst probe's cosine.
    :param mean_cosine: the mean over probes.
    :param worst_length: the token length of the worst probe.
    :param failing_lengths: token lengths whose probe fell below ``threshold``.
    :param cosines: token length -> that probe's cosine.
    """

    passed: bool
    threshold: float
    min_cosine: float
    mean_cosine: float
    worst_length: int
    failing_lengths: list[int]
    cosines: dict[int, float] = {}


def length_probes(encoder: TextEncoder, lengths: Sequence[int]) -> dict[int, str]:
    """A text of exactly ``n`` tokens (special tokens included) for each reachable ``n`` in ``lengths``.

    Texts are built from words that are one token each, so every length from "one word plus
    the special tokens" up is reachable; shorter lengths are skipped.
    """
    ids, _ = encoder.tokenize(list(PROBE_WORDS), truncate=True)
    overhead = min(len(seq or []) for seq in ids) - 1
    singles = [w for w, seq in zip(PROBE_WORDS, ids, strict=True) if len(seq or []) == overhead + 1]
    probes: dict[int, str] = {}
    for n in lengths:
        words = n - overhead
        if words >= 1:
            probes[n] = " ".join(singles[k % len(singles)] for k in range(words))
    return probes


def accuracy_gate(
    candidate: EmbedFn, reference: EmbedFn, texts: dict[int, str], threshold: float = 0.9999
) -> GateResult:
    """Compare ``candidate`` with ``reference`` on ``texts`` (token length -> text)."""
    lengths = sorted(texts)
    batch = [texts[n] for n in lengths]
    a = np.asarray(candidate(batch), dtype=np.float64)
    b = np.asarray(reference(batch), dtype=np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    worst = int(np.argmin(cos))
    return GateResult(
        passed=bool((cos >= threshold).all()),
        threshold=threshold,
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        worst_length=lengths[worst],
        failing_lengths=[n for n, c in zip(lengths, cos, strict=True) if c < threshold],
        cosines={n: float(c) for n, c in zip(lengths, cos, strict=True)},
    )
