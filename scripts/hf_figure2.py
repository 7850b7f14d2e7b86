#!/usr/bin/env python3
"""The Figure 2 procedure of `beb bench figure2` with Hugging Face transformers, for a
side-by-side speed comparison on the same weights and settings.

Usage: hf_figure2.py < SPEC.json, where SPEC (on standard input) holds
  {"p": folder, "q": folder, "cells": [[context ids], ...], "samples": 64, "tokens": 8,
   "threads": 2}
(each context already starts with the beginning-of-sequence token when the model has one).

Per cell, as a competent transformers user would write it: one pass of P over the context
(keeping past_key_values), the cache repeated to `samples` rows, `tokens` tokens sampled
one pass at a time with their log-probabilities taken from the sampling distributions;
one pass of Q over the context, its cache repeated, and one teacher-forced pass of Q over
the sampled tokens; the Monte Carlo KL is the mean of log P - log Q. The prompt's
log-ratio log P(context) - log Q(context) comes from the two context passes.

Prints one JSON object: continuation tokens (sampled tokens only), seconds, tokens/s and
the versions used.
"""

import inspect
import json
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def cache_keyword(model):
    """The forward pass's name for the key/value cache (`cache` in recent transformers)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def load(folder):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    return model


def context_pass(model, ids):
    """Logits of every position of `ids` (one row) and the cache after them."""
    x = torch.tensor([ids], dtype=torch.long)
    out = model(input_ids=x, use_cache=True)
    return torch.log_softmax(out.logits[0].float(), dim=-1), out.past_key_values


def prompt_logprob(logp, ids):
    """log P(ids[1:] | ids[0]) from the context pass's log-probabilities."""
    if len(ids) < 2:
        return 0.0
    targets = torch.tensor(ids[1:], dtype=torch.long)
    return logp[:-1].gather(1, targets[:, None]).sum().item()


def cell(p, q, ids, samples, tokens, generator):
    """The KL estimate and the prompt's log-ratio for one context."""
    p_logp, p_cache = context_pass(p, ids)
    p_cache.batch_repeat_interleave(samples)
    dist = p_logp[-1].expand(samples, -1)
    drawn = []
    p_sum = torch.zeros(samples, dtype=torch.float64)
    for step in range(tokens):
        token = torch.multinomial(dist.exp(), 1, generator=generator)
        p_sum += dist.gather(1, token)[:, 0].double()
        drawn.append(token)
        if step + 1 < tokens:
            out = p(input_ids=token, use_cache=True, **{cache_keyword(p): p_cache})
            dist = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
    drawn = torch.cat(drawn, dim=1)
    q_logp, q_cache = context_pass(q, ids)
    q_sum = q_logp[-1].gather(0, drawn[:, 0]).double()
    if tokens > 1:
        q_cache.batch_repeat_interleave(samples)
        out = q(input_ids=drawn[:, :-1], use_cache=True, **{cache_keyword(q): q_cache})
        ls = torch.log_softmax(out.logits.float(), dim=-1)
        q_sum += ls.gather(2, drawn[:, 1:, None])[:, :, 0].double().sum(1)
    kl = (p_sum - q_sum).mean().item()
    ratio = prompt_logprob(p_logp, ids) - prompt_logprob(q_logp, ids)
    return kl, ratio


def main():
    spec = json.load(sys.stdin)
    torch.set_num_threads(int(spec.get("threads", torch.get_num_threads())))
    p, q = load(spec["p"]), load(spec["q"])
    samples, tokens = int(spec["samples"]), int(spec["tokens"])
    generator = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        # One untimed cell warms up the allocator and the kernels.
        cell(p, q, spec["cells"][0], samples, tokens, generator)
        start = time.perf_counter()
        checksum = 0.0
        for ids in spec["cells"]:
            kl, ratio = cell(p, q, ids, samples, tokens, generator)
            checksum += kl + ratio
        seconds = time.perf_counter() - start
    continuation = len(spec["cells"]) * samples * tokens
    print(
        json.dumps(
            {
                "continuation_tokens": continuation,
                "seconds": seconds,
                "tokens_per_s": continuation / seconds,
                "checksum": checksum,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
