"""Reads the RESULT lines of bench/gpu.sh's logs and prints every ratio the
issue's targets are stated in, as Markdown (bench/gpu.sh writes it to
$BUILD/gpubench/summary.md and $OUT/summary.md).

    python3 bench/gpu_summary.py LOG... > summary.md

A RESULT line is `RESULT <section> key=value ...` (bench/gpu_serve.c,
bench/gpu_train.c, bench/peft_serve.py, bench/peft_train.py). A number
that was not measured (stage skipped, timed out or failed) shows as "not
run", and its target as "?": nothing is filled in.
"""
import sys


def parse(paths):
    rows = []
    for p in paths:
        try:
            lines = open(p, errors="replace").read().splitlines()
        except OSError:
            continue
        for line in lines:
            if not line.startswith("RESULT "):
                continue
            f = line.split()
            r = {"section": f[1]}
            for kv in f[2:]:
                k, _, v = kv.partition("=")
                try:
                    r[k] = float(v)
                except ValueError:
                    r[k] = v
            rows.append(r)
    return rows


def find(rows, section, **want):
    for r in reversed(rows):  # the latest run wins
        if r["section"] == section and all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def fmt(x, spec=".1f"):
    return "not run" if x is None else format(x, spec)


def verdict(ok):
    return "?" if ok is None else ("met" if ok else "NOT met")


def decode_section(rows, models, out):
    out.append("## 1. Single-stream decode vs the bandwidth floor (target >= 0.70)\n")
    out.append("| model | tok/s | floor tok/s | ratio | step ms | floor ms | prefill tok/s | copy GB/s | target |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for m in models:
        r = find(rows, "decode", model=m)
        if not r:
            out.append(f"| {m} | not run | | | | | | | ? |")
            continue
        out.append(
            f"| {m} | {r['tok_s']:.1f} | {r['floor_tok_s']:.1f} | {r['ratio']:.3f} | {r['step_ms']:.3f} | "
            f"{r['floor_ms']:.3f} | {r['prefill_tok_s']:.0f} | {r['copy_gbs']:.0f} | {verdict(r['ratio'] >= 0.70 if r['floor_tok_s'] > 0 else None)} |"
        )
    out.append("")


def tput_section(rows, models, out):
    out.append("## 2. Throughput with many adapters (targets: 64 adapters >= 0.90x no adapter; "
               "batch-32 decode step <= 2x its floor)\n")
    out.append("| model | batch | adapters | tok/s | vs 0 adapters | decode step ms | floor ms | x floor | "
               "slot loads (ms each) | device GiB |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    checks = []
    for m in models:
        ts = [r for r in rows if r["section"] == "tput" and r.get("model") == m]
        for r in ts:
            base = find(rows, "tput", model=m, batch=r["batch"], adapters=0.0)
            rel = r["tok_s"] / base["tok_s"] if base and base["tok_s"] > 0 else None
            out.append(
                f"| {m} | {r['batch']:.0f} | {r['adapters']:.0f} | {r['tok_s']:.1f} | {fmt(rel, '.3f')} | "
                f"{r['dec_step_ms']:.2f} | {r['dec_floor_ms']:.2f} | {r['dec_x_floor']:.2f} | "
                f"{r['swaps']:.0f} ({r['swap_ms']:.1f}) | {r['mem_gib']:.2f} |"
            )
            if r["adapters"] == 64:
                checks.append(f"- {m}, batch {r['batch']:.0f}: 64 adapters / none = {fmt(rel, '.3f')} "
                              f"(target >= 0.90): {verdict(None if rel is None else rel >= 0.90)}")
            if r["batch"] == 32 and r["dec_x_floor"] > 0:
                checks.append(f"- {m}, batch 32, {r['adapters']:.0f} adapters: decode step "
                              f"{r['dec_x_floor']:.2f}x its floor (target <= 2): {verdict(r['dec_x_floor'] <= 2)}")
        if not ts:
            out.append(f"| {m} | not run | | | | | | | | |")
    out.append("")
    out.extend(checks or ["- no throughput results"])
    out.append("")


def peft_serve_section(rows, out):
    out.append("## 3. tessera vs transformers + PEFT, batch 32 (targets: >= 100x PEFT's tokens/s with 32 "
               "distinct adapters, < 0.5x its memory)\n")
    out.append("PEFT ran few new tokens (its rate with 32 adapters is seconds per step); the ratio divides by "
               "PEFT's better number of the two (end to end, or decode only), so it does not flatter tessera.\n")
    out.append("| model | adapters | tessera tok/s | tessera GiB | PEFT tok/s (end to end) | PEFT decode tok/s | "
               "PEFT peak GiB | speed ratio | memory ratio |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    checks = []
    for p in [r for r in rows if r["section"] == "peft_serve"]:
        m, n = p["model"], p["adapters"]
        t = find(rows, "tput", model=m, batch=p["batch"], adapters=n)
        best = max(p["tok_s"], p["decode_tok_s"])
        sr = t["tok_s"] / best if t and best > 0 else None
        mr = t["mem_gib"] / p["peak_gib"] if t and t["mem_gib"] > 0 and p["peak_gib"] > 0 else None
        out.append(
            f"| {m} | {n:.0f} | {fmt(t and t['tok_s'])} | {fmt(t and t['mem_gib'], '.2f')} | {p['tok_s']:.1f} | "
            f"{p['decode_tok_s']:.1f} | {p['peak_gib']:.2f} | {fmt(sr, '.1f')}x | {fmt(mr, '.3f')} |"
        )
        if n == 32:
            checks.append(f"- {m}, 32 adapters: {fmt(sr, '.1f')}x PEFT's tokens/s (target >= 100): "
                          f"{verdict(None if sr is None else sr >= 100)}; memory {fmt(mr, '.3f')} of PEFT's "
                          f"(target < 0.5): {verdict(None if mr is None else mr < 0.5)}")
    if not checks:
        checks.append("- PEFT with 32 adapters: not run")
    out.append("")
    out.extend(checks)
    out.append("")


def train_section(rows, out):
    out.append("## 4. QLoRA training, batch 4 x 1024 (reference: PEFT bf16 LoRA 5,418 tok/s at 30.9 GiB)\n")
    out.append("| who | mode | tok/s | s/step | peak GiB |")
    out.append("|---|---|---|---|---|")
    for r in rows:
        if r["section"] == "train":
            mode = "QLoRA NF4" + (", recompute" if r["recompute"] else "")
            out.append(f"| tessera {r['model']} | {mode} | {r['tok_s']:.1f} | {r['step_s']:.3f} | "
                       f"{r['peak_gib']:.2f} |")
        elif r["section"] == "peft_train":
            mode = {"lora": "bf16 LoRA, grad. checkpointing", "qlora": "QLoRA (bnb NF4), grad. checkpointing"}
            out.append(f"| PEFT {r['model']} | {mode.get(r['mode'], r['mode'])} | {r['tok_s']:.1f} | "
                       f"{r['step_s']:.3f} | {r['peak_gib']:.2f} |")
    peft = find(rows, "peft_train", mode="lora")
    for rc in (1.0, 0.0):
        t = find(rows, "train", recompute=rc)
        if t and peft:
            out.append("")
            out.append(f"- tessera{' (recompute)' if rc else ''} / PEFT LoRA: {t['tok_s'] / peft['tok_s']:.3f}x "
                       f"tokens/s, {t['peak_gib'] / peft['peak_gib']:.3f}x memory")
    out.append("")


def hotload_section(rows, out):
    out.append("## 5. Adapter hot-load to first use (rank 16, all linear)\n")
    out.append("| model | page cache | file MB | read + parse ms | model_adapter_set ms | first forward ms | "
               "total ms |")
    out.append("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["section"] == "hotload":
            out.append(f"| {r['model']} | {r['cache']} | {r['file_mb']:.1f} | {r['parse_ms']:.1f} | "
                       f"{r['set_ms']:.1f} | {r['first_ms']:.1f} | {r['total_ms']:.1f} |")
    out.append("")


def main():
    rows = parse(sys.argv[1:])
    models = []
    for r in rows:
        if "model" in r and r["section"] in ("decode", "tput") and r["model"] not in models:
            models.append(r["model"])
    out = ["# tessera GPU benchmarks (bench/gpu.sh)\n"]
    decode_section(rows, models or ["llama3-8b"], out)
    tput_section(rows, models or ["llama3-8b"], out)
    peft_serve_section(rows, out)
    train_section(rows, out)
    hotload_section(rows, out)
    print("\n".join(out))


if __name__ == "__main__":
    main()
