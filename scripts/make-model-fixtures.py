#!/usr/bin/env python3
"""Rebuilds every model and tokenizer fixture the Swift tests and the Llama quickstart use, with pinned packages.

    scripts/make-model-fixtures.py [--out DIR]        (default: Tests/Fixtures, the committed copy)
    scripts/make-model-fixtures.py check-export DIR   transformers recomputes the logits Swift wrote beside an export
    scripts/make-model-fixtures.py score-export DIR EVAL_JSON   transformers scores an exported run checkpoint on the
                                                      prompts of `tributary eval --json --show N` (score_export.py)

Nothing is downloaded but the pinned packages from PyPI: models are random, tokenizers are trained here on text the
script writes. Run it where Python and PyPI are at hand; CI and the tests read the committed fixtures without Python.
It makes (or reuses) a virtualenv with the pins below in .state/fixtures-venv and runs itself there:
  DIR/tokenizers/   GPT-2, Llama 3 and Qwen2 style byte-level BPE tokenizers, a 2,000+ string corpus, reference
                    encodings and chat-template renderings          (scripts/fixtures/tokenizer_fixtures.py)
  DIR/models/       tiny Llama, Qwen2 and GPT-2 checkpoints in float32/bfloat16/float16 with reference logits,
                    log-probs and greedy continuations              (scripts/fixtures/llama_fixtures.py)
  DIR/models/llama-arith/, DIR/models/qwen2-arith/   the Llama-family quickstarts' starting models for the
                    Llama 3 and Qwen2 style tokenizers              (scripts/fixtures/llama_arith_fixture.py)
"""
import os
import subprocess
import sys

PINS = ["torch==2.13.0+cpu", "transformers==5.23.0", "tokenizers==0.23.3", "safetensors==0.8.0", "numpy==2.4.6"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".state", "fixtures-venv")
HERE = os.path.join(ROOT, "scripts", "fixtures")


def pinned_python():
    """The venv's python, created with the pins on first use."""
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([python, "-m", "pip", "install", "--quiet"] + PINS)
    return python


def run(python, script, *args):
    print(f"make-model-fixtures: {script} {' '.join(args)}", flush=True)
    subprocess.check_call([python, os.path.join(HERE, script), *args])


def main():
    args = sys.argv[1:]
    python = pinned_python()
    if args[:1] == ["check-export"] and len(args) == 2:
        run(python, "llama_fixtures.py", "check-export", args[1])
        return
    if args[:1] == ["score-export"] and len(args) == 3:
        run(python, "score_export.py", args[1], args[2])
        return
    out = os.path.join(ROOT, "Tests", "Fixtures")
    if args[:1] == ["--out"] and len(args) == 2:
        out = os.path.abspath(args[1])
    elif args:
        sys.exit(__doc__)
    run(python, "tokenizer_fixtures.py", os.path.join(out, "tokenizers"))
    run(python, "llama_fixtures.py", os.path.join(out, "models"))
    run(python, "llama_arith_fixture.py", os.path.join(out, "tokenizers", "llama3", "tokenizer.json"),
        os.path.join(out, "models", "llama-arith"), "llama")
    run(python, "llama_arith_fixture.py", os.path.join(out, "tokenizers", "qwen2", "tokenizer.json"),
        os.path.join(out, "models", "qwen2-arith"), "qwen2")


if __name__ == "__main__":
    main()
