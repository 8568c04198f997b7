// serve: tessera's server program: the OpenAI-compatible HTTP server (see
// server.h), or --inspect to print what a model folder holds.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "echo.h"
#include "generate.h"
#include "inspect.h"
#include "sched.h"
#include "server.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: serve --model DIR [--host 127.0.0.1] [--port 8000] [--adapters DIR] [--tenants FILE]\n"
            "             [--max-body BYTES] [--served-model-name NAME] [--chat-template NAME]\n"
            "       serve --inspect --model DIR [--adapter DIR]... [--prompt TEXT] [--chat-template NAME]\n"
            "       serve --generate --model DIR --prompt TEXT [--adapter DIR] [...]  (serve --generate --help)\n"
            "\n"
            "  --model DIR       Hugging Face model folder (config.json, *.safetensors, tokenizer.json)\n"
            "  --host ADDR       address to listen on (default 127.0.0.1)\n"
            "  --port N          port (default 8000; 0 = any free port, logged)\n"
            "  --adapters DIR    folder of PEFT adapters, one per subfolder, watched for changes\n"
            "  --tenants FILE    API keys -> tenants -> adapter globs (JSON, see serve/tenants.h);\n"
            "                    without it no key is needed and every adapter is visible\n"
            "  --max-body BYTES  largest request body (default 8 MiB)\n"
            "  --served-model-name NAME  the base model's id (default: the model folder's name)\n"
            "  --chat-template N override the detected family: chatml, qwen2, qwen2.5, qwen3, llama3, ...\n"
            "  --idle-timeout S  close keep-alive connections idle this long (default 60)\n"
            "  --request-timeout S  a request must arrive whole within this (default 30)\n"
            "  --quant nf4|none  decoder weights NF4 (default) or dense as stored\n"
            "  --threads N       CPU threads (default: every online CPU)\n"
            "  --device cpu|cuda run the model on the CPU (default) or the GPU (a CUDA build)\n"
            "  --max-loras N     adapters resident in slots at once (default 8; LRU swapped)\n"
            "  --max-lora-rank N largest adapter rank served (default 64)\n"
            "  --max-num-seqs N  sequences batched at once (default 16; more wait in a queue)\n"
            "  --max-num-batched-tokens N  tokens per forward step (default 512; long prompts\n"
            "                    are prefilled in chunks between decode tokens)\n"
            "  --max-model-len N positions per sequence (default: the model's, at most 8192)\n"
            "  --kv-blocks N     KV cache blocks of 16 tokens (default: max-num-seqs full-length\n"
            "                    sequences, at most 1 GiB)\n"
            "  --max-queue N     waiting choices beyond which requests get 429 (default 256)\n"
            "  --echo-engine MS  testing: a fake engine that repeats the prompt, one token per MS\n"
            "                    (no model weights are loaded)\n"
            "  --no-engine       testing: no engine at all; generation requests are validated, then 503\n"
            "  --data-dir DIR    turns on /v1/files and /v1/fine_tuning/jobs: uploads and jobs are kept\n"
            "                    in DIR (needs --adapters: fine-tuned adapters are published there)\n"
            "  --train-bin PATH  the train program jobs run (default: train beside this serve)\n"
            "  --max-file-bytes N  largest upload (default 512 MiB)\n"
            "  --ft-workers N    fine-tuning jobs trained at once (default 1; the rest queue)\n"
            "\n"
            "  --inspect         read the model folder (and adapters) as the server will and print\n"
            "                    config, weights, tokenizer, chat template, the tokenized prompt\n"
            "  --adapter DIR     (inspect) PEFT adapter folder\n"
            "  --prompt TEXT     (inspect) a user message to render with the chat template and tokenize\n"
            "\n"
            "SIGTERM/SIGINT stop the server; SIGHUP reloads --tenants and rescans --adapters.\n");
}

// The train program beside this executable (a new string), or NULL.
static char *train_beside_self(void) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return NULL;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash || (size_t)(slash - self) + 7 > sizeof self) return NULL;
    strcpy(slash + 1, "train");
    return strdup(self);
}

// A non-negative integer flag value, or -1.
static long long num(const char *v) {
    char *end;
    long long n = strtoll(v, &end, 10);
    return *v && !*end && n >= 0 ? n : -1;
}

// serve --generate: one prompt through the engine, streamed to stdout.
static int generate_main(int argc, char **argv) {
    generate_opts g = generate_opts_default();
    err_t err = {{0}};
    int rc = generate_parse_args(argc, argv, &g, &err);
    if (rc == 1) {
        generate_usage(stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "error serve: %s\n", err.msg);
        return 2;
    }
    if (generate_run(&g, &err) < 0) {
        fprintf(stderr, "error serve: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--generate") == 0) return generate_main(argc - 1, argv + 1);
    inspect_opts o = {0};
    srv_config sc = {.port = 8000};
    int inspect = 0, echo_ms = 0, threads = 0, no_engine = 0;
    const char *device = "cpu";
    model_opts mo = model_opts_default();
    sched_opts so = sched_opts_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--inspect") == 0) {
            inspect = 1;
            continue;
        } else if (strcmp(a, "--no-engine") == 0) {
            no_engine = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "error serve: %s needs a value\n", a);
            return 2;
        }
        long long n = 0;
        int numeric = strcmp(a, "--port") == 0 || strcmp(a, "--max-body") == 0 || strcmp(a, "--idle-timeout") == 0 ||
                      strcmp(a, "--request-timeout") == 0 || strcmp(a, "--echo-engine") == 0 ||
                      strcmp(a, "--threads") == 0 || strcmp(a, "--max-loras") == 0 ||
                      strcmp(a, "--max-lora-rank") == 0 || strcmp(a, "--max-num-seqs") == 0 ||
                      strcmp(a, "--max-num-batched-tokens") == 0 || strcmp(a, "--max-model-len") == 0 ||
                      strcmp(a, "--kv-blocks") == 0 || strcmp(a, "--max-queue") == 0 ||
                      strcmp(a, "--max-file-bytes") == 0 || strcmp(a, "--ft-workers") == 0;
        int positive = numeric && ((strncmp(a, "--max-", 6) == 0 && strcmp(a, "--max-body") != 0) ||
                                   strcmp(a, "--ft-workers") == 0);
        if (numeric && (num(v) > 1000000000 || (positive && num(v) == 0))) {
            fprintf(stderr, "error serve: %s %s: out of range%s\n", a, v, positive ? " (must be >= 1)" : "");
            return 2;
        }
        if (numeric && ((n = num(v)) < 0 || (strcmp(a, "--port") == 0 && n > 65535))) {
            fprintf(stderr, "error serve: %s %s: expected a non-negative integer%s\n", a, v,
                    strcmp(a, "--port") == 0 ? " up to 65535" : "");
            return 2;
        }
        if (strcmp(a, "--model") == 0) o.model = sc.model_dir = v;
        else if (strcmp(a, "--prompt") == 0) o.prompt = v;
        else if (strcmp(a, "--chat-template") == 0) o.chat_template = sc.chat_template = v;
        else if (strcmp(a, "--host") == 0) sc.host = v;
        else if (strcmp(a, "--port") == 0) sc.port = (int)n;
        else if (strcmp(a, "--adapters") == 0) sc.adapters_dir = v;
        else if (strcmp(a, "--tenants") == 0) sc.tenants_path = v;
        else if (strcmp(a, "--max-body") == 0) sc.max_body_bytes = (size_t)n;
        else if (strcmp(a, "--served-model-name") == 0) sc.served_model_name = v;
        else if (strcmp(a, "--idle-timeout") == 0) sc.idle_timeout_ms = (uint64_t)n * 1000;
        else if (strcmp(a, "--request-timeout") == 0) sc.request_timeout_ms = (uint64_t)n * 1000;
        else if (strcmp(a, "--echo-engine") == 0) echo_ms = n > 0 ? (int)n : 1;
        else if (strcmp(a, "--threads") == 0) threads = (int)n;
        else if (strcmp(a, "--device") == 0) {
            if (strcmp(v, "cpu") != 0 && strcmp(v, "cuda") != 0) {
                fprintf(stderr, "error serve: --device %s: expected cpu or cuda\n", v);
                return 2;
            }
            device = v;
        }
        else if (strcmp(a, "--max-loras") == 0) mo.max_slots = (int)n;
        else if (strcmp(a, "--max-lora-rank") == 0) mo.max_lora_rank = (int)n;
        else if (strcmp(a, "--max-num-seqs") == 0) so.max_num_seqs = (int)n;
        else if (strcmp(a, "--max-num-batched-tokens") == 0) so.max_batched_tokens = (int)n;
        else if (strcmp(a, "--max-model-len") == 0) so.max_model_len = (int)n;
        else if (strcmp(a, "--kv-blocks") == 0) so.kv_blocks = (int)n;
        else if (strcmp(a, "--max-queue") == 0) so.max_queue = (int)n;
        else if (strcmp(a, "--data-dir") == 0) sc.data_dir = v;
        else if (strcmp(a, "--train-bin") == 0) sc.train_bin = v;
        else if (strcmp(a, "--max-file-bytes") == 0) sc.max_file_bytes = (size_t)n;
        else if (strcmp(a, "--ft-workers") == 0) sc.ft_workers = (int)n;
        else if (strcmp(a, "--quant") == 0) {
            if (strcmp(v, "nf4") == 0) mo.quant = MODEL_LOAD_NF4;
            else if (strcmp(v, "none") == 0) mo.quant = MODEL_LOAD_NONE;
            else {
                fprintf(stderr, "error serve: --quant %s: expected nf4 or none\n", v);
                return 2;
            }
        }
        else if (strcmp(a, "--adapter") == 0) {
            if (o.n_adapters == INSPECT_MAX_ADAPTERS) {
                fprintf(stderr, "error serve: at most %d --adapter\n", INSPECT_MAX_ADAPTERS);
                return 2;
            }
            o.adapters[o.n_adapters++] = v;
        } else {
            fprintf(stderr, "error serve: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!o.model) {
        usage(stderr);
        return 2;
    }
    err_t err = {{0}};
    if (inspect) {
        if (inspect_run(&o, &err) != 0) {
            fprintf(stderr, "error serve: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    // The real engine unless --echo-engine: the weights load before the
    // socket opens, so "listening" means ready to generate.
    model *m = NULL;
    if (!echo_ms && !no_engine) {
        if (mo.max_tokens < so.max_batched_tokens) mo.max_tokens = so.max_batched_tokens;
        bk_open_opts bo = {.threads = threads};
        if (!(mo.bk = bk_open(device, &bo, &err)) || !(m = model_load(sc.model_dir, &mo, &err))) {
            fprintf(stderr, "error serve: %s\n", err.msg);
            return 1;
        }
    }
    char *train_bin = sc.data_dir && !sc.train_bin ? train_beside_self() : NULL;
    if (train_bin) sc.train_bin = train_bin;
    srv *s = srv_open(&sc, &err);
    sched *e = NULL;
    echo *ee = NULL;
    if (s && echo_ms && !(ee = echo_new(s, echo_ms, &err))) {
        srv_free(s);
        s = NULL;
    }
    if (s && m && !(e = sched_new(s, m, &so, &err))) {
        srv_free(s);
        s = NULL;
    }
    if (!s) {
        fprintf(stderr, "error serve: %s\n", err.msg);
        model_free(m);
        free(train_bin);
        return 1;
    }
    int rc = srv_run(s);
    srv_free(s);
    free(train_bin); // after srv_free: the config points at it
    sched_free(e);
    echo_free(ee);
    model_free(m);
    return rc;
}
