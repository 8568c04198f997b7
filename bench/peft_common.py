"""What bench/peft_serve.py and bench/peft_train.py share: the bf16 model of
a bench/gen_model folder's shape with random weights made on the GPU, and
the versions line.

The folder's config.json is the one tessera loads; its quantization_config
(bitsandbytes NF4: tessera's weights) is dropped, so transformers builds the
same architecture in bf16. Weights are transformers' own random init, drawn
on the GPU (seconds; no checkpoint is read): throughput does not depend on
the values.
"""
import importlib
import json
import os

import torch


def versions():
    out = []
    for name in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            mod = importlib.import_module(name)
            out.append(f"{name} {getattr(mod, '__version__', '?')}")
        except Exception as e:  # bitsandbytes is optional
            out.append(f"{name} absent ({type(e).__name__})")
    return ", ".join(out)


def load_config(model_dir):
    from transformers import AutoConfig

    with open(os.path.join(model_dir, "config.json")) as f:
        d = json.load(f)
    d.pop("quantization_config", None)
    d.pop("torch_dtype", None)
    model_type = d.pop("model_type")
    return AutoConfig.for_model(model_type, **d)


def make_model(model_dir):
    """The bf16 model on the GPU, random weights, eval mode."""
    from transformers import AutoModelForCausalLM

    cfg = load_config(model_dir)
    torch.manual_seed(0)
    with torch.device("cuda"):
        try:
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        except TypeError:  # transformers 4 names it torch_dtype
            model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16)
    return model.eval()


def lora_config(dropout=0.0, random_b=True):
    """Rank 16, alpha 32 on all linear layers but lm_head, as tessera's bench adapters."""
    from peft import LoraConfig

    return LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
        # PEFT starts B at zero; random B makes the adapters differ, as trained ones do
        init_lora_weights=not random_b,
    )


def gib(n):
    return n / 2**30
