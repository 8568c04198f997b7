"""transformers + PEFT LoRA training tokens/s and peak GPU memory, the
reference tessera's bench/gpu_train is compared with.

    python3 bench/peft_train.py --model DIR [--name NAME] [--batch 4] [--seq 1024]
                                [--steps 3] [--mode lora|qlora|both]

DIR is a bench/gen_model folder (peft_common.py builds the bf16 model from
its config.json, random weights on the GPU). LoRA rank 16, alpha 32,
dropout 0.05 on all linear layers but lm_head; gradient checkpointing
(non-reentrant), the input-grad hook PEFT needs with it; AdamW (lr 1e-4)
over the LoRA parameters, gradients clipped to norm 1; --batch random
sequences of --seq tokens, labels = inputs (transformers' shifted loss).
One warm-up step, then --steps timed steps; tokens/s counts the batch's
tokens. Peak memory: torch.cuda.max_memory_allocated over the steps (and
the model, made first), weights included.

--mode qlora (or both) runs the QLoRA recipe when bitsandbytes imports: every
decoder nn.Linear replaced by bnb's Linear4bit (NF4, double quantization,
bf16 compute) quantized from the random bf16 weights on the GPU, then
prepare_model_for_kbit_training, then the same LoRA and steps; its peak is
counted from after the quantization. Without bitsandbytes it says so and
skips. One RESULT line per run for bench/gpu_summary.py.
"""
import argparse
import gc
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import peft_common as pc  # noqa: E402


def quantize_4bit(model):
    """Replaces the decoder's nn.Linear layers by bitsandbytes Linear4bit (NF4)."""
    import bitsandbytes as bnb

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or name == "lm_head":
                continue
            q = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=torch.bfloat16,
                compress_statistics=True,
                quant_type="nf4",
                device="meta",
            )
            q.weight = bnb.nn.Params4bit(
                child.weight.data, requires_grad=False, quant_type="nf4", compress_statistics=True
            ).to("cuda")
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, q)
            del child
    gc.collect()
    torch.cuda.empty_cache()
    return model


def run(args, mode):
    from peft import get_peft_model

    t0 = time.perf_counter()
    model = pc.make_model(args.model)
    if mode == "qlora":
        from peft import prepare_model_for_kbit_training

        model = quantize_4bit(model)
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    pm = get_peft_model(model, pc.lora_config(dropout=0.05, random_b=False))
    pm.train()
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    print(
        f"{mode}: model ready in {time.perf_counter() - t0:.1f} s, {sum(p.numel() for p in params)} trainable "
        f"parameters, {pc.gib(torch.cuda.memory_allocated()):.2f} GiB allocated",
        flush=True,
    )
    if mode == "qlora":
        torch.cuda.reset_peak_memory_stats()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=g).cuda()
    N = args.batch * args.seq
    total = 0.0
    for step in range(args.steps + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = pm(input_ids=ids, labels=ids).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if step:
            total += dt
        print(
            f"{mode} step {step}{'' if step else ' (warm-up)'}: {dt:.3f} s, {N / dt:.1f} tokens/s, "
            f"loss {loss.item():.4f}, grad norm {norm.item():.4f}",
            flush=True,
        )
    peak = pc.gib(torch.cuda.max_memory_allocated())
    tps = N * args.steps / total if args.steps else 0.0
    print(f"peft {mode}: {tps:.1f} tokens/s, peak memory {peak:.2f} GiB", flush=True)
    print(
        f"RESULT peft_train model={args.name} mode={mode} batch={args.batch} seq={args.seq} tok_s={tps:.2f} "
        f"step_s={total / max(args.steps, 1):.4f} peak_gib={peak:.3f}",
        flush=True,
    )
    del pm, model, opt, params
    gc.collect()
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", default="model")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--mode", choices=("lora", "qlora", "both"), default="lora")
    args = ap.parse_args()
    print("peft_train:", pc.versions(), flush=True)
    if args.mode in ("lora", "both"):
        run(args, "lora")
    if args.mode == "lora":
        return
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:
        print(f"peft qlora: skipped, bitsandbytes does not import ({type(e).__name__}: {e})", flush=True)
        return
    torch.cuda.reset_peak_memory_stats()
    try:
        run(args, "qlora")
    except Exception as e:  # the optional part must not hide the main numbers
        print(f"peft qlora: failed: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
