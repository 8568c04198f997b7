// generate: load, render, tokenize, then serve/engine's generation loop with
// the text streamed through tok_stream.
#include "generate.h"

#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "chat.h"
#include "engine.h"
#include "kv.h"
#include "opts.h"
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
    o.kv_dtype = o.lora_dtype = "bf16"; // as serve: its expected texts are this command's
    o.matmul = "q8";
    return o;
}

void generate_apply_matmul(const char *device, const char *matmul, const char *lm_head, model_opts *mo) {
    int cpu = !device || strcmp(device, "cpu") == 0;
    if (cpu) bk_cpu_set_matmul(matmul && strcmp(matmul, "exact") == 0 ? BK_MATMUL_EXACT : BK_MATMUL_Q8);
    mo->lm_head_q8 = lm_head ? strcmp(lm_head, "q8") == 0 : cpu && LM_HEAD_DEFAULT_Q8;
}

static const char *const quants[] = {"nf4", "none", NULL};
static const char *const devices[] = {"cpu", "cuda", NULL};
static const char *const dtypes[] = {"bf16", "f32", NULL};
static const char *const matmuls[] = {"q8", "exact", NULL};
static const char *const lm_heads[] = {"bf16", "q8", NULL};

#define GEN_NOPTS 21

// The options as an opts table writing into o (and *quant, the --quant name).
static void gen_table(generate_opts *o, const char **quant, opts_opt t[GEN_NOPTS]) {
    const opts_opt table[GEN_NOPTS] = {
        {.name = "--model", .type = OPTS_STRING, .field = &o->model, .arg = "DIR", .help = "Hugging Face model folder"},
        {.name = "--adapter", .type = OPTS_STRING, .field = &o->adapter, .arg = "DIR",
         .help = "PEFT LoRA adapter folder"},
        {.name = "--prompt", .type = OPTS_STRING, .field = &o->prompt, .arg = "TEXT",
         .help = "the user message (with --raw: the whole prompt text)"},
        {.name = "--system", .type = OPTS_STRING, .field = &o->system, .arg = "TEXT",
         .help = "a system message before it"},
        {.name = "--raw", .type = OPTS_FLAG, .field = &o->raw, .help = "no chat template"},
        {.name = "--chat-template", .type = OPTS_STRING, .field = &o->chat_template, .arg = "NAME",
         .help = "chatml, qwen2, qwen2.5, qwen3, llama3, llama3-genprompt, llama3.1"},
        {.name = "--max-tokens", .type = OPTS_INT, .field = &o->max_tokens, .arg = "N",
         .help = "at most N new tokens", .min = 1, .max = 1 << 24},
        {.name = "--temperature", .type = OPTS_FLOAT, .field = &o->temperature, .arg = "T",
         .help = "0 = greedy"},
        {.name = "--top-p", .type = OPTS_FLOAT, .field = &o->top_p, .arg = "P", .help = "nucleus filter (1 = off)"},
        {.name = "--top-k", .type = OPTS_INT, .field = &o->top_k, .arg = "K", .help = "top-k filter (0 = off)",
         .min = -1, .max = 1 << 30},
        {.name = "--seed", .type = OPTS_U64, .field = &o->seed, .arg = "N", .help = "sampling seed",
         .max = 0x7fffffff},
        {.name = "--quant", .type = OPTS_CHOICE, .field = quant, .arg = "nf4|none",
         .help = "NF4 decoder weights or dense as stored", .choices = quants},
        {.name = "--threads", .type = OPTS_INT, .field = &o->threads, .arg = "N", .help = "CPU threads", .max = 1024,
         .def = "every online CPU"},
        {.name = "--device", .type = OPTS_CHOICE, .field = &o->device, .arg = "cpu|cuda",
         .help = "run the model on the CPU or the GPU", .choices = devices},
        {.name = "--matmul", .type = OPTS_CHOICE, .field = &o->matmul, .arg = "q8|exact",
         .help = "CPU matmul: int8 dot products (q8) or f32 (exact);\nignored with --device cuda", .choices = matmuls},
        {.name = "--lm-head", .type = OPTS_CHOICE, .field = &o->lm_head, .arg = "bf16|q8",
         .help = "logits through the lm_head as stored or an int8 copy\n(q8: --device cpu only)", .choices = lm_heads,
         .def = LM_HEAD_DEFAULT},
        {.name = "--stats", .type = OPTS_FLAG, .field = &o->stats, .help = "timing line on stderr"},
        {.name = "--kv-dtype", .type = OPTS_CHOICE, .field = &o->kv_dtype, .arg = "bf16|f32",
         .help = "KV cache element type (as serve's)", .choices = dtypes},
        {.name = "--lora-dtype", .type = OPTS_CHOICE, .field = &o->lora_dtype, .arg = "bf16|f32",
         .help = "the adapter's LoRA A / B element type (as serve's)", .choices = dtypes},
        {0},
    };
    memcpy(t, table, sizeof table);
}

#define GEN_USAGE "usage: serve --generate --model DIR --prompt TEXT [options]\n\n"

void generate_usage(FILE *f) {
    generate_opts d = generate_opts_default();
    const char *quant = d.quant == MODEL_LOAD_NONE ? "none" : "nf4";
    opts_opt t[GEN_NOPTS];
    gen_table(&d, &quant, t);
    opts_help(f, GEN_USAGE, t, NULL);
}

int generate_parse_args(int argc, char **argv, generate_opts *o, err_t *err) {
    const char *quant = o->quant == MODEL_LOAD_NONE ? "none" : "nf4";
    opts_opt t[GEN_NOPTS];
    gen_table(o, &quant, t);
    int rc = opts_parse(t, argc, argv, err);
    if (rc != OPTS_OK) return rc;
    o->quant = strcmp(quant, "none") == 0 ? MODEL_LOAD_NONE : MODEL_LOAD_NF4;
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
    // As the server does: special tokens from the template's markup only.
    chat_prompt *p = chat_render_segments(fam, msgs, nm, &co, err);
    free(bos);
    if (!p) return NULL;
    int32_t *ids = chat_encode(t, p, n, NULL, err);
    chat_prompt_free(p);
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
    if (bk_dtype_parse(o->kv_dtype, &mo.kv_dtype) < 0 || bk_dtype_parse(o->lora_dtype, &mo.lora_dtype) < 0)
        return err_set(err, "--kv-dtype %s / --lora-dtype %s: expected bf16 or f32", o->kv_dtype, o->lora_dtype);
    generate_apply_matmul(o->device, o->matmul, o->lm_head, &mo);
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
