"""PEFT loads an adapter written by tessera's `train`, and its logits match ours.

Run on the GPU machine (it has torch, transformers, peft), from the repo root:
    python3 tests/oracle/peft_check.py MODEL_DIR ADAPTER_DIR OURS.safetensors
OURS.safetensors comes from build/tools/dumplogits (ids + logits at every
position). Exits 1 when max|ours - peft| / max|peft| >= 1e-4.
"""
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

model_dir, adapter_dir, ours_path = sys.argv[1:4]
ours = load_file(ours_path)
ids = ours["ids"].to(torch.long).unsqueeze(0)
base = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
model = PeftModel.from_pretrained(base, adapter_dir)  # fails loudly on any format problem
model.eval()
with torch.no_grad():
    ref = model(input_ids=ids).logits[0].float()
rel = ((ours["logits"] - ref).abs().max() / ref.abs().max()).item()
print(f"peft_check: {adapter_dir}: {ids.shape[1]} positions, max rel. logits error {rel:.3e}")
sys.exit(0 if rel < 1e-4 else 1)
