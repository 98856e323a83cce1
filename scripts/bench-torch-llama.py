#!/usr/bin/env python3
"""transformers on PyTorch CPU at the config of `tributary-bench model --arch llama`, for the side-by-side ratio.

    bench-torch-llama.py [--threads 2] [--json]

Same shapes as the Swift benchmark: LlamaForCausalLM L4 C256 H4 KV2 I688, vocabulary 512, tied, context 256; training
batch 8 x 256 (forward, backward, AdamW), decoding a 64-token prompt to 192 new tokens at temperature 1 with the KV
cache, batch 1 and 16. Best of several runs, like the Swift side. Pinned: torch==2.13.0+cpu transformers==5.23.0.
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


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
    train_tps = B * T / best

    model.eval()
    prompt = torch.randint(0, 256, (1, 64))

    @torch.no_grad()
    def decode(count):
        ids = prompt.repeat(count, 1)
        kwargs = dict(max_new_tokens=192, min_new_tokens=192, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, pad_token_id=0)
        model.generate(ids, **kwargs)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            model.generate(ids, **kwargs)
            best = min(best, time.perf_counter() - t0)
        return count * 192 / best

    d1, d16 = decode(1), decode(16)
    figures = {"train_tokens_per_s": round(train_tps, 2), "train_step_ms": round(1000 * best, 2),
               "decode_tokens_per_s_batch1": round(d1, 2), "decode_tokens_per_s_batch16": round(d16, 2),
               "threads": args.threads, "torch": torch.__version__, "parameters": sum(p.numel() for p in model.parameters())}
    print(f"transformers LlamaForCausalLM on PyTorch CPU, {args.threads} threads, {figures['parameters']} parameters")
    print(f"train tokens/s            {train_tps:.0f} (step {1000 * best:.1f} ms)")
    print(f"decode tokens/s batch 1   {d1:.0f}")
    print(f"decode tokens/s batch 16  {d16:.0f}")
    if args.json:
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
