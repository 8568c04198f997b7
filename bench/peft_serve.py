"""transformers + PEFT generation throughput and peak GPU memory, the
reference tessera's bench/gpu_serve is compared with (bench/gpu.sh runs both
in one session on the same GPU).

    python3 bench/peft_serve.py --model DIR [--name NAME] [--batch 32]
                                [--adapters 0,1,32] [--prompt 128] [--new-tokens 8]

DIR is a bench/gen_model folder: the model is built in bf16 from its
config.json with random weights on the GPU (peft_common.py). For each
adapter count n: a batch of --batch rows, each the same --prompt random
token ids (fixed seed), greedy generation (do_sample=False, min_new_tokens =
max_new_tokens, so no row stops early). n = 0: the plain transformers model;
n >= 1: a PeftModel with n rank-16 all-linear adapters, row i using adapter
i mod n through generate(adapter_names=...) (PEFT's mixed-adapter batches).

Timed, after one warm-up generate: generate with 1 new token (the prefill)
and with --new-tokens; tokens/s = batch * new_tokens / time (end to end),
decode tokens/s = batch * (new_tokens - 1) / (time - prefill time).
tessera's throughput bench decodes 128 tokens per request; PEFT is run with
few tokens (default 8) because with 32 adapters a step takes seconds: the
decode rate is the comparable number. Peak memory: torch.cuda's
max_memory_allocated over the adapter count's run, weights included.
Each result is also printed as one RESULT line for bench/gpu_summary.py.
"""
import argparse
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import peft_common as pc  # noqa: E402


def timed_generate(model, ids, new_tokens, names):
    kw = dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=0,
    )
    if names is not None:
        kw["adapter_names"] = names
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**kw)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    got = out.shape[1] - ids.shape[1]
    if got != new_tokens:
        raise RuntimeError(f"generate made {got} tokens, expected {new_tokens}")
    return dt


def measure(model, ids, args, n, names):
    torch.cuda.reset_peak_memory_stats()
    timed_generate(model, ids, 2, names)  # warm-up
    t1 = timed_generate(model, ids, 1, names)
    tn = timed_generate(model, ids, args.new_tokens, names)
    B, N = ids.shape[0], args.new_tokens
    tps = B * N / tn
    dec = B * (N - 1) / (tn - t1) if N > 1 and tn > t1 else 0.0
    peak = pc.gib(torch.cuda.max_memory_allocated())
    print(
        f"peft batch {B}, {n} adapters: {tps:.1f} tok/s end to end ({N} new tokens in {tn:.2f} s; "
        f"prefill {t1:.2f} s), decode {dec:.1f} tok/s; peak memory {peak:.2f} GiB",
        flush=True,
    )
    print(
        f"RESULT peft_serve model={args.name} batch={B} adapters={n} new_tokens={N} tok_s={tps:.3f} "
        f"decode_tok_s={dec:.3f} prefill_s={t1:.4f} peak_gib={peak:.3f}",
        flush=True,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", default="model")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--adapters", default="0,1,32")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=8)
    args = ap.parse_args()
    counts = [int(x) for x in args.adapters.split(",")]
    print("peft_serve:", pc.versions(), flush=True)
    t0 = time.perf_counter()
    model = pc.make_model(args.model)
    print(f"model {args.name}: {next(model.parameters()).dtype}, {pc.gib(torch.cuda.memory_allocated()):.2f} GiB, made in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    g = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    ids = torch.randint(3, min(vocab, 1000), (1, args.prompt), generator=g).repeat(args.batch, 1).cuda()

    if 0 in counts:
        measure(model, ids, args, 0, None)
    wanted = sorted(n for n in counts if n > 0)
    if not wanted:
        return
    from peft import get_peft_model

    t0 = time.perf_counter()
    cfg = pc.lora_config()
    pm = get_peft_model(model, cfg, adapter_name="a0")
    made = 1
    for n in wanted:
        while made < n:
            pm.add_adapter(f"a{made}", cfg)
            made += 1
        pm.eval()
        print(f"{made} adapters made ({time.perf_counter() - t0:.1f} s so far)", flush=True)
        measure(pm, ids, args, n, [f"a{i % n}" for i in range(args.batch)])


if __name__ == "__main__":
    main()
