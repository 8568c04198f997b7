"""Fine-tuning on tessera with the official OpenAI Python SDK, step by step as
OpenAI's fine-tuning guide does it: upload the data, create the job, poll it,
use the model. Only the base URL (and the base model's name) differ.

    serve --model MODEL_DIR --adapters adapters --data-dir data &
    pip install openai
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 python3 clients/finetune.py

Env: OPENAI_BASE_URL (default http://127.0.0.1:8000/v1), OPENAI_API_KEY (a
key from --tenants; any text in open mode), BASE_MODEL (default: the server's
base model), TRAINING_FILE (default clients/support_demo.jsonl), N_EPOCHS /
BATCH_SIZE / LR_MULTIPLIER (defaults: what teaches the tiny demo model its
eight answers), QUESTION.
"""
import os
import sys
import time

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("OPENAI_API_KEY", "none"),
)
training_path = os.environ.get("TRAINING_FILE", "clients/support_demo.jsonl")


def hyper(name, default):
    v = os.environ.get(name)
    if not v:
        return default
    return v if v == "auto" else float(v) if "." in v or "e" in v else int(v)


# The base model: the one model of /v1/models without a parent.
base = os.environ.get("BASE_MODEL") or next(
    m.id for m in client.models.list().data if not getattr(m, "parent", None))

# Step 1: upload the training file (JSONL, one chat per line).
with open(training_path, "rb") as f:
    file = client.files.create(file=f, purpose="fine-tune")
print(f"uploaded {file.filename}: {file.id} ({file.bytes} bytes)")

# Step 2: create the fine-tuning job.
job = client.fine_tuning.jobs.create(
    model=base,
    training_file=file.id,
    suffix="support",
    method={
        "type": "supervised",
        "supervised": {
            "hyperparameters": {
                "n_epochs": hyper("N_EPOCHS", 30),
                "batch_size": hyper("BATCH_SIZE", 2),
                "learning_rate_multiplier": hyper("LR_MULTIPLIER", 30),
            }
        },
    },
)
print(f"created {job.id}: {job.status}")

# Step 3: poll the job, printing its events as they come.
seen = set()
while job.status not in ("succeeded", "failed", "cancelled"):
    time.sleep(1)
    job = client.fine_tuning.jobs.retrieve(job.id)
    events = client.fine_tuning.jobs.list_events(fine_tuning_job_id=job.id, limit=100)
    for ev in reversed(events.data):
        if ev.id not in seen:
            seen.add(ev.id)
            print(f"  {ev.message}")
print(f"job {job.id}: {job.status}")
if job.status != "succeeded":
    err = job.error
    print(f"error: {err.code}: {err.message}" if err else "error: none given", file=sys.stderr)
    sys.exit(1)
print(f"fine-tuned model: {job.fine_tuned_model} ({job.trained_tokens} trained tokens)")

# Step 4: use the fine-tuned model like any other.
question = os.environ.get("QUESTION", "Where is my order?")
completion = client.chat.completions.create(
    model=job.fine_tuned_model,
    messages=[{"role": "user", "content": question}],
    temperature=0,
    max_tokens=60,
)
print(f"Q: {question}")
print(f"A: {completion.choices[0].message.content}")
