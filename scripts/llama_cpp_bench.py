"""llama.cpp's side of `beb bench scale` (through llama-cpp-python), on the same GGUF file,
token ids and thread count as beb's side.

Reads {"model": path, "ids": [...], "prompt": n, "sample": n, "threads": n, "check": n,
"extra_bufts": bool} on stdin and prints one JSON object: load seconds, resident memory (MB) after load and at the
end with its peak, scoring tokens/s (one batch over all ids, logits of every position),
sampling tokens/s (`sample` tokens drawn at temperature 1 after the first `prompt` ids,
prompt included in the time, as on beb's side) and the log-probs of the first `check`
scored tokens, which beb compares with its own. "extra_bufts": false turns off llama.cpp's
repacked weight layouts (the prebuilt 0.3.36 crashes in its AMX matrix product on some CPUs
that advertise AMX).
"""
import json
import sys
import time

import numpy as np
import llama_cpp
import llama_cpp.llama
from llama_cpp import Llama


def status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    req = json.load(sys.stdin)
    if not req.get("extra_bufts", True):
        # llama.cpp's weight repacking (AMX and others) off: the Llama class has no option for
        # it, so its default model parameters are patched.
        default = llama_cpp.llama_model_default_params

        def params():
            p = default()
            p.use_extra_bufts = False
            return p

        llama_cpp.llama.llama_cpp.llama_model_default_params = params
    ids = req["ids"]
    threads = req["threads"]
    start = time.perf_counter()
    llm = Llama(model_path=req["model"], n_ctx=max(512, len(ids) + req["sample"] + 8),
                n_batch=len(ids), n_ubatch=len(ids), n_threads=threads,
                n_threads_batch=threads, logits_all=True, verbose=False)
    # One one-token forward, which pages the mapped weights in (as on beb's side).
    llm.eval(ids[:1])
    load_s = time.perf_counter() - start
    rss_load = status_mb("VmRSS")

    llm.reset()
    start = time.perf_counter()
    llm.eval(ids)
    score_s = time.perf_counter() - start
    logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logsoftmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    check = [float(logsoftmax[i, ids[i + 1]]) for i in range(min(req["check"], len(ids) - 1))]

    rng = np.random.default_rng(1)
    llm.reset()
    start = time.perf_counter()
    llm.eval(ids[: req["prompt"]])
    for _ in range(req["sample"]):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        p = np.exp(row - row.max())
        token = int(rng.choice(len(p), p=p / p.sum()))
        llm.eval([token])
    sample_s = time.perf_counter() - start

    json.dump({
        "load_s": load_s,
        "rss_load_mb": rss_load,
        "rss_end_mb": status_mb("VmRSS"),
        "hwm_mb": status_mb("VmHWM"),
        "score_tps": len(ids) / score_s,
        "sample_tps": req["sample"] / sample_s,
        "logprobs": check,
    }, sys.stdout)


main()
