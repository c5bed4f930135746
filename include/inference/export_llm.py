"""Export a Hugging Face model to OpenVINO IR with optimum-intel (``make models``).

    python -m include.inference.export_llm                       # Qwen/Qwen2.5-0.5B-Instruct, int4
    python -m include.inference.export_llm --model Qwen/Qwen2.5-1.5B-Instruct --weight-format int8
    python -m include.inference.export_llm --model /path/to/hf-folder --name my-llm
    python -m include.inference.export_llm --task rerank --model BAAI/bge-reranker-base

The weights are fetched with ``huggingface_hub`` (network needed unless the hub cache already
holds them; an unreachable hub is a one-line error), exported with optimum-intel's
``optimum-cli export openvino`` (``text-generation-with-past`` for ``generate``,
``text-classification`` for a cross-encoder ``rerank`` model), optionally with NNCF weight
compression (``int4``/``int8``), into ``${AGENTFLOW_MODEL_CACHE}/llm/<name>-<format>/``
(written under a temporary name, renamed into place when complete). It prints the
``config/models.yaml`` entry and the ``pydanticai_openvino`` connection to use.

The exporter runs in a subprocess: ``AGENTFLOW_OPTIMUM_CLI`` names the command (for
example ``uvx --from "optimum-intel[openvino]" optimum-cli export openvino``, when the
project's environment pins a transformers that optimum-intel does not support); by default
it is optimum-intel's export command in this interpreter (:mod:`include.inference._optimum_cli`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from include.inference._errors import ConversionError
from include.inference.convert import cache_root

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
WEIGHT_FORMATS = ("int4", "int8", "fp16", "fp32")
TASKS = {"generate": "text-generation-with-past", "rerank": "text-classification"}
#: Files an export must leave behind to count as complete.
EXPORTED_FILES = (
    "openvino_model.xml",
    "openvino_model.bin",
    "openvino_tokenizer.xml",
    "openvino_detokenizer.xml",
)
#: The exit code of :mod:`include.inference._optimum_cli` when optimum-intel cannot export here.
EXPORTER_UNUSABLE = 2


class HubUnreachableError(ConversionError):
    """The Hugging Face hub could not be reached (and the weights are not cached)."""


class ExporterUnavailableError(ConversionError):
    """optimum-intel's exporter cannot run in this environment; the message says why."""


#: Where ``make venv-dev`` installs the exporter's packages (``requirements-export.txt``):
#: optimum-intel 2.2 needs an older transformers than the runtime, so the export subprocess
#: gets them first on its path and everything else from this virtualenv.
EXPORT_OVERLAY = Path(sys.prefix) / "export-overlay"


def exporter_command() -> list[str]:
    """The export command prefix: ``AGENTFLOW_OPTIMUM_CLI``, else optimum-intel's command in this
    interpreter, with the exporter overlay (``EXPORT_OVERLAY``) first on its path when installed."""
    configured = os.environ.get("AGENTFLOW_OPTIMUM_CLI")
    if configured:
        return shlex.split(configured)
    command = [sys.executable, "-m", "include.inference._optimum_cli"]
    if EXPORT_OVERLAY.is_dir():
        return ["env", f"PYTHONPATH={os.pathsep.join([str(EXPORT_OVERLAY), _repo_root()])}", *command]
    return command


def fetch_source(model: str, revision: str | None = None) -> Path:
    """A local folder with the model: ``model`` itself if it is a folder, else a hub snapshot.

    :raises HubUnreachableError: the hub cannot be reached and the snapshot is not cached.
    """
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=model, revision=revision))
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HubUnreachableError(
            f"cannot fetch {model!r} from the Hugging Face hub ({type(err).__name__}: {reason[:200]}); "
            "exporting a hub model needs network, or pass --model with a local folder"
        ) from err


def export_model(
    source: str | Path,
    out: str | Path,
    task: str = "generate",
    weight_format: str = "int4",
    extra_args: list[str] | None = None,
) -> Path:
    """Export the Hugging Face model folder ``source`` to OpenVINO IR in ``out`` (replaced if present).

    :param task: ``generate`` (a causal LM, with its KV cache) or ``rerank`` (a cross-encoder).
    :param weight_format: ``int4``/``int8`` (NNCF weight compression), ``fp16`` or ``fp32``.
    :param extra_args: more ``optimum-cli export openvino`` arguments.
    :raises ValueError: an unknown task or weight format.
    :raises ExporterUnavailableError: optimum-intel cannot export in this environment.
    :raises ConversionError: the export failed (the message ends with the exporter's last lines).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, not {task!r}")
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"weight_format must be one of {WEIGHT_FORMATS}, not {weight_format!r}")
    out = Path(out)
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    command = [
        *exporter_command(),
        "--model",
        str(source),
        "--task",
        TASKS[task],
        "--weight-format",
        weight_format,
        *(extra_args or []),
        str(tmp),
    ]
    log.info("exporting %s (%s, %s): %s", source, task, weight_format, shlex.join(command))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [_repo_root(), os.environ.get("PYTHONPATH")])),
    }
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    except OSError as err:
        raise ExporterUnavailableError(f"cannot run the exporter {command[0]!r}: {err}") from err
    for line in done.stderr.splitlines()[-40:]:
        log.debug("exporter: %s", line)
    if done.returncode != 0 or not all((tmp / f).is_file() for f in EXPORTED_FILES):
        shutil.rmtree(tmp, ignore_errors=True)
        tail = " | ".join(line for line in done.stderr.strip().splitlines()[-3:] if line.strip())
        error = ExporterUnavailableError if done.returncode == EXPORTER_UNUSABLE else ConversionError
        raise error(f"exporting {source} failed (exit {done.returncode}): {tail or done.stdout[-500:]}")
    if out.exists():
        shutil.rmtree(out)
    os.rename(tmp, out)
    log.info("exported %s to %s", source, out)
    return out


def _repo_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def default_name(model: str, weight_format: str) -> str:
    """A registry name from a hub id or folder.

    ``Qwen/Qwen2.5-0.5B-Instruct`` with ``int4`` -> ``qwen2.5-0.5b-instruct-int4``.
    """
    base = Path(model.rstrip("/")).name.lower()
    return re.sub(r"[^a-z0-9._-]+", "-", f"{base}-{weight_format}").strip("-.")


def registry_entry(name: str, folder: Path, task: str) -> str:
    """The ``config/models.yaml`` entry for an exported model."""
    return f"  {name}:\n    source:\n      path: {folder}\n    task: {task}\n    device: CPU\n"


def main(argv: list[str] | None = None) -> int:
    """Export one model and print how to use it; a one-line error (exit 2) when it cannot."""
    parser = argparse.ArgumentParser(description="Export a Hugging Face model to OpenVINO IR (make models).")
    parser.add_argument("--model", default=os.environ.get("AGENTFLOW_LLM_MODEL", DEFAULT_MODEL))
    parser.add_argument("--revision", default=None)
    parser.add_argument("--task", choices=sorted(TASKS), default="generate")
    parser.add_argument("--weight-format", choices=WEIGHT_FORMATS, default="int4")
    parser.add_argument("--name", default=None, help="registry name (default: from the model id)")
    parser.add_argument("--out", default=None, help="output folder (default: the model cache)")
    parser.add_argument("--force", action="store_true", help="export again even if the folder is complete")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    name = args.name or default_name(args.model, args.weight_format)
    out = Path(args.out) if args.out else cache_root() / "llm" / name
    try:
        if args.force or not all((out / f).is_file() for f in EXPORTED_FILES):
            export_model(fetch_source(args.model, args.revision), out, args.task, args.weight_format)
        else:
            log.info("%s is already exported at %s (--force to redo)", name, out)
    except ConversionError as err:
        print(f"make models: {err}", file=sys.stderr)
        return 2
    extra = {"model": name, "max_new_tokens": 512}
    print(f"\nExported {args.model} to {out}\n")
    print("Add to config/models.yaml (under models:):\n")
    print(registry_entry(name, out, args.task))
    if args.task == "generate":
        print("Then create the connection:\n")
        print(
            "  airflow connections add openvino_llm --conn-type pydanticai_openvino "
            f"--conn-extra '{json.dumps(extra)}'"
        )
        print(f"\nor, without the registry: --conn-extra '{json.dumps({'model_dir': str(out)})}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
