// generate: load, render, tokenize, then serve/engine's generation loop with
// the text streamed through tok_stream.
#include "generate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "chat.h"
#include "engine.h"
#include "kv.h"
#include "sampler.h"
#include "tokenizer.h"
#include "util.h"

#define KV_BLOCK 16

generate_opts generate_opts_default(void) {
    generate_opts o = {0};
    o.max_tokens = 256;
    o.temperature = 0.0f;
    o.top_p = 1.0f;
    o.quant = MODEL_LOAD_NF4;
    o.device = "cpu";
    return o;
}

void generate_usage(FILE *f) {
    fprintf(f,
            "usage: --generate --model DIR --prompt TEXT [--adapter DIR] [--system TEXT] [--raw]\n"
            "                  [--chat-template NAME] [--max-tokens N] [--temperature T] [--top-p P]\n"
            "                  [--top-k K] [--seed N] [--quant nf4|none] [--threads N] [--device cpu|cuda]\n"
            "                  [--stats]\n"
            "\n"
            "  --model DIR          Hugging Face model folder\n"
            "  --adapter DIR        PEFT LoRA adapter folder\n"
            "  --prompt TEXT        the user message (with --raw: the whole prompt text)\n"
            "  --system TEXT        a system message before it\n"
            "  --raw                no chat template\n"
            "  --chat-template NAME chatml, qwen2, qwen2.5, qwen3, llama3, llama3-genprompt, llama3.1\n"
            "  --max-tokens N       at most N new tokens (default 256)\n"
            "  --temperature T      0 = greedy (default)\n"
            "  --top-p P, --top-k K nucleus / top-k filters (default off)\n"
            "  --seed N             sampling seed (default 0)\n"
            "  --quant nf4|none     NF4 decoder weights (default) or dense as stored\n"
            "  --threads N          CPU threads (default: every online CPU)\n"
            "  --device cpu|cuda    run the model on the CPU (default) or the GPU\n"
            "  --stats              timing line on stderr\n");
}

static int parse_long(const char *flag, const char *v, long lo, long hi, long *out, err_t *err) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v || n < lo || n > hi)
        return err_set(err, "%s: expected an integer in [%ld, %ld], got \"%s\"", flag, lo, hi, v);
    *out = n;
    return 0;
}

static int parse_float(const char *flag, const char *v, float *out, err_t *err) {
    char *end;
    errno = 0;
    float f = strtof(v, &end);
    if (errno || *end || end == v) return err_set(err, "%s: expected a number, got \"%s\"", flag, v);
    *out = f;
    return 0;
}

int generate_parse_args(int argc, char **argv, generate_opts *o, err_t *err) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
        if (strcmp(a, "--generate") == 0) continue;
        if (strcmp(a, "--raw") == 0) {
            o->raw = 1;
            continue;
        }
        if (strcmp(a, "--stats") == 0) {
            o->stats = 1;
            continue;
        }
        if (i + 1 >= argc) return err_set(err, "%s needs a value", a);
        const char *v = argv[++i];
        long n = 0;
        int rc = 0;
        if (strcmp(a, "--model") == 0) o->model = v;
        else if (strcmp(a, "--adapter") == 0) o->adapter = v;
        else if (strcmp(a, "--prompt") == 0) o->prompt = v;
        else if (strcmp(a, "--system") == 0) o->system = v;
        else if (strcmp(a, "--chat-template") == 0) o->chat_template = v;
        else if (strcmp(a, "--temperature") == 0) rc = parse_float(a, v, &o->temperature, err);
        else if (strcmp(a, "--top-p") == 0) rc = parse_float(a, v, &o->top_p, err);
        else if (strcmp(a, "--max-tokens") == 0) {
            if ((rc = parse_long(a, v, 1, 1 << 24, &n, err)) == 0) o->max_tokens = (int)n;
        } else if (strcmp(a, "--top-k") == 0) {
            if ((rc = parse_long(a, v, -1, 1 << 30, &n, err)) == 0) o->top_k = (int)n;
        } else if (strcmp(a, "--seed") == 0) {
            if ((rc = parse_long(a, v, 0, 0x7fffffffL, &n, err)) == 0) o->seed = (uint64_t)n;
        } else if (strcmp(a, "--threads") == 0) {
            if ((rc = parse_long(a, v, 0, 1024, &n, err)) == 0) o->threads = (int)n;
        } else if (strcmp(a, "--device") == 0) {
            if (strcmp(v, "cpu") != 0 && strcmp(v, "cuda") != 0)
                return err_set(err, "--device: expected cpu or cuda, got \"%s\"", v);
            o->device = v;
        } else if (strcmp(a, "--quant") == 0) {
            if (strcmp(v, "nf4") == 0) o->quant = MODEL_LOAD_NF4;
            else if (strcmp(v, "none") == 0) o->quant = MODEL_LOAD_NONE;
            else return err_set(err, "--quant: expected nf4 or none, got \"%s\"", v);
        } else {
            return err_set(err, "unknown option %s", a);
        }
        if (rc < 0) return -1;
    }
    if (!o->model) return err_set(err, "--model DIR is required");
    if (!o->prompt) return err_set(err, "--prompt TEXT is required");
    return 0;
}

// The prompt's token ids: rendered with the chat template (whose output
// already holds BOS and the special tokens) or raw.
static int32_t *prompt_ids(const generate_opts *o, const tok *t, size_t *n, err_t *err) {
    if (o->raw) return tok_encode_ex(t, o->prompt, strlen(o->prompt), TOK_PARSE_SPECIAL | TOK_ADD_SPECIAL, n, err);
    chat_family fam;
    char *bos = NULL;
    int rc;
    if (o->chat_template) {
        rc = chat_family_parse(o->chat_template, &fam, err);
    } else {
        char *path = util_path_join(o->model, "tokenizer_config.json");
        rc = path ? chat_from_config(path, &fam, &bos, err) : err_set(err, "out of memory");
        free(path);
    }
    if (rc < 0) return NULL;
    chat_msg msgs[2];
    int nm = 0;
    if (o->system) msgs[nm++] = (chat_msg){"system", o->system, NULL};
    msgs[nm++] = (chat_msg){"user", o->prompt, NULL};
    chat_opts co = {.add_generation_prompt = 1, .enable_thinking = -1, .bos_token = bos};
    char *text = chat_render(fam, msgs, nm, &co, NULL, NULL, err);
    free(bos);
    if (!text) return NULL;
    int32_t *ids = tok_encode(t, text, strlen(text), 1, n, err);
    free(text);
    return ids;
}

typedef struct sink {
    tok_stream *ts;
    int failed;
} sink;

static int on_token(void *ctx, int32_t token, const sampler_result *r) {
    sink *s = ctx;
    if (r->finish == SAMPLER_FINISH_STOP) return 0; // the stop token is not printed
    size_t len = 0;
    const char *txt = tok_stream_push(s->ts, token, &len);
    if (!txt) return s->failed = 1;
    if (len) {
        fwrite(txt, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

// eos ids of config (+ generation_config) and the tokenizer, deduplicated.
static int stop_ids(const model_config *cfg, const tok *t, int32_t *ids) {
    int n = 0;
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_token_ids[i] >= 0 && cfg->eos_token_ids[i] < cfg->vocab_size) ids[n++] = cfg->eos_token_ids[i];
    int32_t e = tok_eos_id(t);
    if (e >= 0 && e < cfg->vocab_size && !model_config_is_eos(cfg, e)) ids[n++] = e;
    return n;
}

static int generate(const generate_opts *o, model *m, const tok *t, err_t *err) {
    const model_config *cfg = model_get_config(m);
    size_t n = 0;
    int32_t *ids = prompt_ids(o, t, &n, err);
    if (!ids) return -1;
    int rc = -1;
    kv_cache *kv = NULL;
    sink s = {tok_stream_new(t, 1), 0};
    int max_new = o->max_tokens;
    if (n == 0) {
        err_set(err, "the prompt encodes to no tokens");
        goto done;
    }
    if ((int64_t)n + max_new > cfg->max_position_embeddings) {
        if ((int64_t)n >= cfg->max_position_embeddings) {
            err_set(err, "prompt of %zu tokens reaches max_position_embeddings %lld", n,
                    (long long)cfg->max_position_embeddings);
            goto done;
        }
        max_new = (int)(cfg->max_position_embeddings - (int64_t)n);
    }
    int len = (int)n + max_new;
    kv = model_kv_new(m, KV_BLOCK, (len + KV_BLOCK - 1) / KV_BLOCK, 1, len, err);
    if (!kv || !s.ts) {
        if (!s.ts) err_set(err, "out of memory");
        goto done;
    }
    int32_t stops[MODEL_MAX_EOS + 1];
    sampler_params sp = sampler_params_default();
    sp.temperature = o->temperature;
    sp.top_p = o->top_p;
    sp.top_k = o->top_k;
    sp.seed = o->seed;
    sp.stop_ids = stops;
    sp.n_stop_ids = stop_ids(cfg, t, stops);
    engine_gen_opts go = {.slot = o->adapter ? 0 : -1, .max_tokens = max_new, .sp = &sp};
    engine_stats st;
    if (engine_generate(m, kv, ids, (int)n, &go, on_token, &s, &st, err) < 0) goto done;
    if (s.failed) {
        err_set(err, "out of memory while decoding text");
        goto done;
    }
    size_t tail = 0;
    const char *txt = tok_stream_flush(s.ts, &tail);
    if (txt && tail) fwrite(txt, 1, tail, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (o->stats) {
        static const char *why[] = {"length", "stop", "caller"};
        fprintf(stderr,
                "info generate: prompt_tokens=%d generated=%d finish=%s prefill_tok_s=%.1f decode_tok_s=%.1f "
                "threads=%d\n",
                st.prompt_tokens, st.generated, why[st.finish],
                st.prefill_s > 0 ? st.prompt_tokens / st.prefill_s : 0.0,
                st.decode_s > 0 && st.generated > 1 ? (st.generated - 1) / st.decode_s : 0.0, bk_cpu_threads());
    }
    rc = 0;
done:
    tok_stream_free(s.ts);
    kv_free(kv);
    free(ids);
    return rc;
}

int generate_run(const generate_opts *o, err_t *err) {
    model_opts mo = model_opts_default();
    if (!(mo.bk = bk_open(o->device, &(bk_open_opts){.threads = o->threads}, err))) return -1;
    mo.quant = o->quant;
    mo.max_slots = 1;
    model *m = model_load(o->model, &mo, err);
    if (!m) return -1;
    tok *t = tok_open(o->model, err);
    int rc = t ? 0 : -1;
    if (rc == 0 && o->adapter) {
        lora_adapter *a = lora_load(o->adapter, model_get_config(m), err);
        rc = a ? model_adapter_set(m, 0, a, err) : -1;
        lora_free(a);
    }
    if (rc == 0) rc = generate(o, m, t, err);
    tok_free(t);
    model_free(m);
    return rc;
}
