#!/usr/bin/env python3
"""transformers on PyTorch CPU at the config of `tributary-bench model --arch llama`, for the side-by-side ratio.

    bench-torch-llama.py [--threads 2] [--json]

Same shapes as the Swift benchmark (Benchmarks/Bench/ModelBench.swift): LlamaForCausalLM L4 C256 H4 KV2 I688,
vocabulary 512, tied, context 256; training batch 8 x 256 (forward, backward, AdamW); decoding a 64-token prompt to 192
new tokens at temperature 1 with the KV cache, batch 1 and 16. Best of several runs, like the Swift side.

Decoding is measured two ways:
- decode_tokens_per_s_batchN (the fair figure, used for the ratio): a hand-written KV-cache loop under
  torch.inference_mode. The prompt is prefilled once (batch 1, logits of the last position only), its cache repeated
  for the N samples (as the Swift sampler shares one prompt cache per group), then one token per sample per step is fed
  with past_key_values (a DynamicCache) and use_cache=True, sampled with torch.multinomial from the softmax of the last
  logits. Prefill, cache copy and sampling are inside the timing, as on the Swift side.
- generate_tokens_per_s_batchN: model.generate() with the same prompt and lengths (prefilled N times, as generate does),
  for reference: its per-step Python overhead (logits processors, stopping criteria, cache bookkeeping) dominates at
  this small size.

Measure on a quiet machine, as the Swift side is: with another process holding one of the 2 cores, torch's 2-thread
OpenMP regions stall at every barrier (one decode step of this model went from ~5 ms at --threads 1 to ~140 ms at
--threads 2 at load 6). The 1-minute load average is printed with the figures.

Pinned (PyPI, CPU wheels): torch==2.13.0+cpu transformers==5.23.0; Python 3.11.
The venv at /root/tributary-fixtures-venv has them.
"""
import argparse
import json
import time

import torch
import transformers
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

PROMPT_LENGTH, NEW_TOKENS = 64, 192


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    B, T = 8, 256
    tokens = torch.randint(0, 256, (B, T))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)

    def train_step():
        out = model(tokens, labels=tokens)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    model.train()
    train_step()
    times = []
    for _ in range(8):
        t0 = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - t0)
    best = min(times)
    median = sorted(times)[len(times) // 2]
    train_tps = B * T / best

    model.eval()
    prompt = torch.randint(0, 256, (1, PROMPT_LENGTH))

    @torch.inference_mode()
    def decode_loop(count):
        """count samples of `prompt`, NEW_TOKENS each, by hand with the KV cache; returns the (count, NEW_TOKENS) tokens."""
        cache = DynamicCache(config=model.config)
        out = model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        logits = out.logits[:, -1, :]
        if count > 1:
            cache.batch_repeat_interleave(count)
            logits = logits.expand(count, -1)
        generated = torch.empty((count, NEW_TOKENS), dtype=torch.long)
        for step in range(NEW_TOKENS):
            probs = torch.softmax(logits.float(), dim=-1)
            next_tokens = torch.multinomial(probs, 1)
            generated[:, step] = next_tokens[:, 0]
            if step + 1 == NEW_TOKENS:
                break  # the last token is sampled, not fed (as the Swift sampler stops at maxNewTokens)
            out = model(input_ids=next_tokens, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits = out.logits[:, -1, :]
        return generated

    @torch.no_grad()
    def generate(count):
        ids = prompt.repeat(count, 1)
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=True, temperature=1.0,
                             top_k=None, top_p=None, pad_token_id=0)
        return out[:, PROMPT_LENGTH:]

    def tokens_per_s(fn, count, repeats=3):
        out = fn(count)  # warm-up
        assert tuple(out.shape) == (count, NEW_TOKENS), f"{fn.__name__}: got {tuple(out.shape)} new tokens"
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(count)
            best = min(best, time.perf_counter() - t0)
        return count * NEW_TOKENS / best

    d1, d16 = tokens_per_s(decode_loop, 1), tokens_per_s(decode_loop, 16)
    g1, g16 = tokens_per_s(generate, 1), tokens_per_s(generate, 16)
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    figures = {"train_tokens_per_s": round(train_tps, 2), "train_step_ms": round(1000 * best, 2),
               "train_step_median_ms": round(1000 * median, 2),
               "decode_tokens_per_s_batch1": round(d1, 2), "decode_tokens_per_s_batch16": round(d16, 2),
               "generate_tokens_per_s_batch1": round(g1, 2), "generate_tokens_per_s_batch16": round(g16, 2),
               "threads": args.threads, "torch": torch.__version__, "transformers": transformers.__version__,
               "parameters": sum(p.numel() for p in model.parameters()), "load_average_1m": load}
    print(f"transformers {transformers.__version__} LlamaForCausalLM on PyTorch {torch.__version__} CPU, {args.threads} threads, "
          f"{figures['parameters']} parameters, load {load}")
    print(f"train tokens/s                 {train_tps:.0f} (step {1000 * best:.1f} ms, median {1000 * median:.1f} ms)")
    print(f"decode tokens/s batch 1        {d1:.0f} (KV-cache loop)")
    print(f"decode tokens/s batch 16       {d16:.0f} (KV-cache loop)")
    print(f"generate() tokens/s batch 1    {g1:.0f}")
    print(f"generate() tokens/s batch 16   {g16:.0f}")
    if args.json:
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
