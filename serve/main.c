// serve: tessera's server program: the OpenAI-compatible HTTP server (see
// server.h), or --inspect to print what a model folder holds.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "echo.h"
#include "generate.h"
#include "inspect.h"
#include "opts.h"
#include "sched.h"
#include "server.h"

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

// What the command line sets.
typedef struct serve_args {
    inspect_opts io;
    srv_config sc;
    model_opts mo;
    sched_opts so;
    int inspect, no_engine, threads;
    int echo_ms;           // -1: no --echo-engine
    int idle_s, request_s, header_ms; // 0: the server's defaults
    const char *device, *quant;
    const char *kv_dtype, *lora_dtype; // bk_dtype names
    const char *matmul, *lm_head; // generate_apply_matmul's
    const char *pooling;   // emb_pooling_parse's
} serve_args;

static const char *const quants[] = {"nf4", "none", NULL};
static const char *const dtypes[] = {"bf16", "f32", NULL};
static const char *const devices[] = {"cpu", "cuda", NULL};
static const char *const matmuls[] = {"q8", "exact", NULL};
static const char *const lm_heads[] = {"bf16", "q8", NULL};
static const char *const poolings[] = {"last", "mean", NULL};

// --adapter (repeatable): appended to the inspect_opts' list.
static int parse_adapter(const opts_opt *opt, const char *v, void *field, err_t *err) {
    inspect_opts *io = field;
    if (io->n_adapters == INSPECT_MAX_ADAPTERS) return err_set(err, "at most %d of them", INSPECT_MAX_ADAPTERS);
    io->adapters[io->n_adapters++] = v;
    return 0;
}

#define USAGE                                                                                                       \
    "usage: serve --model DIR [--host 127.0.0.1] [--port 8000] [--adapters DIR] [--tenants FILE]\n"                 \
    "             [--max-body BYTES] [--served-model-name NAME] [--chat-template NAME]\n"                           \
    "       serve --inspect --model DIR [--adapter DIR]... [--prompt TEXT] [--chat-template NAME]\n"                \
    "       serve --generate --model DIR --prompt TEXT [--adapter DIR] [...]  (serve --generate --help)\n"

#define EPILOGUE "\nSIGTERM/SIGINT stop the server; SIGHUP reloads --tenants and rescans --adapters.\n"

// Counts and sizes: non-negative, and below a billion so that no product
// of two overflows; the --max-* limits (not --max-body) are at least 1.
#define COUNT .min = 0, .max = 1000000000
#define LIMIT .min = 1, .max = 1000000000

// Parses the command line into a (which holds the defaults). Returns -1 to
// go on, else the exit status (0 after --help, 2 for a bad command line).
static int parse_args(int argc, char **argv, serve_args *a) {
    const opts_opt table[] = {
        {.help = "server:"},
        {.name = "--model", .type = OPTS_STRING, .field = &a->io.model, .arg = "DIR",
         .help = "Hugging Face model folder (config.json, *.safetensors, tokenizer.json)"},
        {.name = "--host", .type = OPTS_STRING, .field = &a->sc.host, .arg = "ADDR", .help = "address to listen on",
         .def = "127.0.0.1"},
        {.name = "--port", .type = OPTS_INT, .field = &a->sc.port, .arg = "N",
         .help = "port (0 = any free port, logged)", .min = 0, .max = 65535},
        {.name = "--adapters", .type = OPTS_STRING, .field = &a->sc.adapters_dir, .arg = "DIR",
         .help = "folder of PEFT adapters, one per subfolder, watched for changes"},
        {.name = "--tenants", .type = OPTS_STRING, .field = &a->sc.tenants_path, .arg = "FILE",
         .help = "API keys -> tenants -> adapter globs (JSON, see serve/tenants.h);\n"
                 "without it no key is needed and every adapter is visible"},
        {.name = "--lora-roots", .type = OPTS_STRING, .field = &a->sc.lora_roots, .arg = "DIR,...",
         .help = "folders POST /v1/load_lora_adapter may load from besides --adapters\n"
                 "(checked on the real path: no '..' or symlink out)", .def = "none"},
        {.name = "--admin-key", .type = OPTS_STRING, .field = &a->sc.admin_key, .arg = "KEY",
         .help = "open mode (no --tenants): the Bearer key that may load and unload\nadapters",
         .def = "off: no one can"},
        {.name = "--max-body", .type = OPTS_SIZE, .field = &a->sc.max_body_bytes, .arg = "BYTES",
         .help = "largest request body", COUNT, .def = "8 MiB"},
        {.name = "--served-model-name", .type = OPTS_STRING, .field = &a->sc.served_model_name, .arg = "NAME",
         .help = "the base model's id", .def = "the model folder's name"},
        {.name = "--chat-template", .type = OPTS_STRING, .field = &a->io.chat_template, .arg = "NAME",
         .help = "override the detected family: chatml, qwen2, qwen2.5, qwen3, llama3, ..."},
        {.name = "--idle-timeout", .type = OPTS_INT, .field = &a->idle_s, .arg = "S",
         .help = "close keep-alive connections idle this long", COUNT, .def = "60"},
        {.name = "--request-timeout", .type = OPTS_INT, .field = &a->request_s, .arg = "S",
         .help = "a request must arrive whole within this", COUNT, .def = "30"},
        {.name = "--header-timeout-ms", .type = OPTS_INT, .field = &a->header_ms, .arg = "MS",
         .help = "a connection must send its request headers within this", LIMIT, .def = "10000"},
        {.name = "--max-connections", .type = OPTS_INT, .field = &a->sc.max_connections, .arg = "N",
         .help = "open connections at once; at the cap the one waiting longest\nfor its headers is closed, else 503",
         LIMIT, .def = "the descriptor limit (ulimit -n) - 256"},
        {.name = "--max-connections-per-ip", .type = OPTS_INT, .field = &a->sc.max_connections_per_ip, .arg = "N",
         .help = "open connections from one client address (more get 503)", LIMIT, .def = "max-connections / 4"},
        {.help = "engine:"},
        {.name = "--quant", .type = OPTS_CHOICE, .field = &a->quant, .arg = "nf4|none",
         .help = "decoder weights NF4 or dense as stored", .choices = quants},
        {.name = "--threads", .type = OPTS_INT, .field = &a->threads, .arg = "N", .help = "CPU threads", COUNT,
         .def = "every online CPU"},
        {.name = "--device", .type = OPTS_CHOICE, .field = &a->device, .arg = "cpu|cuda",
         .help = "run the model on the CPU or the GPU (a CUDA build)", .choices = devices},
        {.name = "--matmul", .type = OPTS_CHOICE, .field = &a->matmul, .arg = "q8|exact",
         .help = "CPU matmul: int8 dot products (q8) or f32 (exact, the\ntransformers-exact kernels); ignored with "
                 "--device cuda", .choices = matmuls},
        {.name = "--lm-head", .type = OPTS_CHOICE, .field = &a->lm_head, .arg = "bf16|q8",
         .help = "logits through the lm_head as stored or an int8 copy\n(q8: --device cpu only)", .choices = lm_heads,
         .def = LM_HEAD_DEFAULT},
        {.name = "--max-loras", .type = OPTS_INT, .field = &a->mo.max_slots, .arg = "N",
         .help = "adapters resident in slots at once (LRU swapped)", LIMIT},
        {.name = "--max-lora-rank", .type = OPTS_INT, .field = &a->mo.max_lora_rank, .arg = "N",
         .help = "largest adapter rank served", LIMIT},
        {.name = "--max-num-seqs", .type = OPTS_INT, .field = &a->so.max_num_seqs, .arg = "N",
         .help = "sequences batched at once (more wait in a queue)", LIMIT},
        {.name = "--max-num-batched-tokens", .type = OPTS_INT, .field = &a->so.max_batched_tokens, .arg = "N",
         .help = "tokens per forward step (long prompts are prefilled\nin chunks between decode tokens)", LIMIT},
        {.name = "--max-model-len", .type = OPTS_INT, .field = &a->so.max_model_len, .arg = "N",
         .help = "positions per sequence", LIMIT, .def = "the model's, at most 8192"},
        {.name = "--kv-blocks", .type = OPTS_INT, .field = &a->so.kv_blocks, .arg = "N",
         .help = "KV cache blocks of 16 tokens", COUNT,
         .def = "max-num-seqs full-length sequences, at most 1 GiB"},
        {.name = "--kv-dtype", .type = OPTS_CHOICE, .field = &a->kv_dtype, .arg = "bf16|f32",
         .help = "KV cache element type: bf16 holds twice the tokens in the same\n"
                 "bytes (--inspect prints kv_bytes_per_token for it)",
         .choices = dtypes},
        {.name = "--lora-dtype", .type = OPTS_CHOICE, .field = &a->lora_dtype, .arg = "bf16|f32",
         .help = "adapter slots' LoRA A / B element type (f32 math either way)", .choices = dtypes},
        {.name = "--pooling", .type = OPTS_CHOICE, .field = &a->pooling, .arg = "last|mean",
         .help = "/v1/embeddings: the last token's final hidden state (Qwen3-Embedding's)\n"
                 "or the mean of every token's, L2-normalized either way", .choices = poolings, .def = "last"},
        {.name = "--max-queue", .type = OPTS_INT, .field = &a->so.max_queue, .arg = "N",
         .help = "waiting choices beyond which requests get 429", LIMIT},
        {.help = "fine-tuning:"},
        {.name = "--data-dir", .type = OPTS_STRING, .field = &a->sc.data_dir, .arg = "DIR",
         .help = "turns on /v1/files and /v1/fine_tuning/jobs: uploads and jobs are kept\n"
                 "in DIR (needs --adapters: fine-tuned adapters are published there)"},
        {.name = "--train-bin", .type = OPTS_STRING, .field = &a->sc.train_bin, .arg = "PATH",
         .help = "the train program jobs run", .def = "train beside this serve"},
        {.name = "--max-file-bytes", .type = OPTS_SIZE, .field = &a->sc.max_file_bytes, .arg = "N",
         .help = "largest upload", LIMIT, .def = "512 MiB"},
        {.name = "--ft-workers", .type = OPTS_INT, .field = &a->sc.ft_workers, .arg = "N",
         .help = "fine-tuning jobs trained at once (the rest queue)", LIMIT, .def = "1"},
        {.help = "testing:"},
        {.name = "--echo-engine", .type = OPTS_INT, .field = &a->echo_ms, .arg = "MS",
         .help = "a fake engine that repeats the prompt, one token per MS\n(no model weights are loaded)", COUNT,
         .def = "off"},
        {.name = "--no-engine", .type = OPTS_FLAG, .field = &a->no_engine,
         .help = "no engine at all; generation requests are validated, then 503"},
        {.help = "inspect:"},
        {.name = "--inspect", .type = OPTS_FLAG, .field = &a->inspect,
         .help = "read the model folder (and adapters) as the server will and print\n"
                 "config, weights, tokenizer, chat template, the tokenized prompt"},
        {.name = "--adapter", .type = OPTS_CUSTOM, .field = &a->io, .arg = "DIR",
         .help = "PEFT adapter folder (repeatable)", .parse = parse_adapter},
        {.name = "--prompt", .type = OPTS_STRING, .field = &a->io.prompt, .arg = "TEXT",
         .help = "a user message to render with the chat template and tokenize"},
        {0},
    };
    err_t err = {{0}};
    int rc = opts_parse(table, argc, argv, &err);
    if (rc == OPTS_HELP) {
        opts_help(stdout, USAGE, table, EPILOGUE);
        return 0;
    }
    if (rc != OPTS_OK) {
        fprintf(stderr, "error serve: %s\n(serve --help lists the options)\n", err.msg);
        return 2;
    }
    if (!a->io.model) {
        opts_help(stderr, USAGE, table, EPILOGUE);
        return 2;
    }
    return -1;
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
    serve_args a = {.sc = {.port = 8000}, .mo = model_opts_default(), .so = sched_opts_default(), .echo_ms = -1,
                    .device = "cpu", .quant = "nf4", .kv_dtype = "bf16", .lora_dtype = "bf16",
                    .matmul = "q8", .pooling = "last"};
    int status = parse_args(argc, argv, &a);
    if (status >= 0) return status;
    inspect_opts o = a.io;
    srv_config sc = a.sc;
    sc.model_dir = o.model;
    sc.chat_template = o.chat_template;
    sc.idle_timeout_ms = (uint64_t)a.idle_s * 1000;
    sc.request_timeout_ms = (uint64_t)a.request_s * 1000;
    sc.header_timeout_ms = (uint64_t)a.header_ms;
    int inspect = a.inspect, no_engine = a.no_engine, threads = a.threads;
    int echo_ms = a.echo_ms < 0 ? 0 : a.echo_ms > 0 ? a.echo_ms : 1; // --echo-engine 0: 1 ms
    const char *device = a.device;
    model_opts mo = a.mo;
    mo.quant = strcmp(a.quant, "none") == 0 ? MODEL_LOAD_NONE : MODEL_LOAD_NF4;
    bk_dtype_parse(a.kv_dtype, &mo.kv_dtype); // names from `dtypes`: always parse
    bk_dtype_parse(a.lora_dtype, &mo.lora_dtype);
    o.kv_dtype = mo.kv_dtype;
    sched_opts so = a.so;
    emb_pooling_parse(a.pooling, &so.pooling); // a name from `poolings`: always parses
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
        generate_apply_matmul(device, a.matmul, a.lm_head, &mo);
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
