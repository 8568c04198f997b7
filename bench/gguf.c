// bench/gguf: converts our Hugging Face model folders (tests/tools/mkmodel)
// and PEFT LoRA adapters to GGUF, so llama.cpp can run the very same model
// side by side with tessera (bench/peer.sh). Our own converter: llama.cpp's
// convert_hf_to_gguf.py needs transformers, which this machine lacks.
//
//   build/bench/gguf model DIR OUT.gguf [--dtype bf16|f32]
//   build/bench/gguf lora MODEL_DIR ADAPTER_DIR OUT.gguf [--dtype f32|bf16]
//   build/bench/gguf dump FILE          (header, key/values, tensors)
//   build/bench/gguf check DIR FILE     (every tensor equals the model's)
//
// model: Qwen2 / Qwen3 checkpoints (arch qwen2 / qwen3 in llama.cpp: no q/k
// row permutation, NEOX RoPE, as in the HF layout), default RoPE only.
// Matrices keep their bytes: HF [out, in] row-major is GGUF ne {in, out}.
// They are written as --dtype (bf16: the checkpoint's own values; f32: the
// same values widened, for exact comparisons); 1-D tensors (norms, biases)
// are always F32, as llama.cpp's converter writes them. Tied embeddings
// write no output.weight (llama.cpp then reuses token_embd). The vocabulary
// is tokenizer.json's byte-level BPE: tokens by id, merges, token types
// (added special tokens CONTROL, other added tokens USER_DEFINED, ids with
// no token "[PADn]" UNUSED), pre-tokenizer "qwen2", no BOS added, bos / eos
// / pad ids from config.json and tokenizer_config.json, and the chat
// template, so llama-server renders the same prompt tessera does.
//
// lora: general.type adapter, adapter.type lora, adapter.lora.alpha (the
// adapter's lora_alpha); blk.N.<tensor>.weight.lora_a ne {in, r} (PEFT's A
// [r, in]) and .lora_b ne {r, out} (B [out, r]). llama.cpp scales by
// alpha / r; where PEFT's scale differs (rsLoRA, rank or alpha patterns)
// B is multiplied by the ratio so the product is the same.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "config.h"
#include "gguf.h"
#include "safetensors.h"
#include "util.h"

// llama.cpp's token types.
enum { TOK_NORMAL = 1, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5 };

// Buffers the writer borrows until the file is written.
typedef struct owned {
    void **p;
    int n, cap;
} owned;

static void *own(owned *o, void *p) {
    if (!p) return NULL;
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 256;
        void **q = realloc(o->p, (size_t)cap * sizeof *q);
        if (!q) return free(p), NULL;
        o->p = q;
        o->cap = cap;
    }
    return o->p[o->n++] = p;
}

static void owned_free(owned *o) {
    for (int i = 0; i < o->n; i++) free(o->p[i]);
    free(o->p);
}

// ---- names -------------------------------------------------------------------

// llama.cpp's name of each kind (per-layer ones get "blk.N." in front).
static const char *const gguf_names[MODEL_W_COUNT] = {
    [MODEL_W_EMBED] = "token_embd.weight",     [MODEL_W_NORM] = "output_norm.weight",
    [MODEL_W_LM_HEAD] = "output.weight",       [MODEL_W_ATTN_NORM] = "attn_norm.weight",
    [MODEL_W_Q] = "attn_q.weight",             [MODEL_W_K] = "attn_k.weight",
    [MODEL_W_V] = "attn_v.weight",             [MODEL_W_O] = "attn_output.weight",
    [MODEL_W_GATE] = "ffn_gate.weight",        [MODEL_W_UP] = "ffn_up.weight",
    [MODEL_W_DOWN] = "ffn_down.weight",        [MODEL_W_Q_BIAS] = "attn_q.bias",
    [MODEL_W_K_BIAS] = "attn_k.bias",          [MODEL_W_V_BIAS] = "attn_v.bias",
    [MODEL_W_O_BIAS] = "attn_output.bias",     [MODEL_W_Q_NORM] = "attn_q_norm.weight",
    [MODEL_W_K_NORM] = "attn_k_norm.weight",   [MODEL_W_MLP_NORM] = "ffn_norm.weight",
};

static void gguf_name(model_weight w, int layer, char *buf, size_t n) {
    if (model_weight_per_layer(w)) snprintf(buf, n, "blk.%d.%s", layer, gguf_names[w]);
    else snprintf(buf, n, "%s", gguf_names[w]);
}

static const char *arch_name(const model_config *cfg) { return cfg->arch == MODEL_ARCH_QWEN3 ? "qwen3" : "qwen2"; }

// ---- tensors -----------------------------------------------------------------

// A tensor's data as dt (F32 or BF16): borrowed from the mapping when it is
// stored so, else converted into a buffer kept in o. NULL + err.
static const void *tensor_as(const sft_tensor *t, gguf_dtype dt, owned *o, err_t *err) {
    if ((dt == GGUF_BF16 && t->dtype == SFT_BF16) || (dt == GGUF_F32 && t->dtype == SFT_F32)) return t->data;
    float *f = own(o, malloc((size_t)t->numel * sizeof *f));
    if (!f) return err_set(err, "%s: out of memory", t->name), NULL;
    if (sft_to_f32(t, f, err) < 0) return NULL;
    if (dt == GGUF_F32) return f;
    uint16_t *h = own(o, malloc((size_t)t->numel * sizeof *h));
    if (!h) return err_set(err, "%s: out of memory", t->name), NULL;
    for (int64_t i = 0; i < t->numel; i++) h[i] = util_f32_to_bf16(f[i]);
    return h;
}

static int add_weight(gguf_writer *w, const sft *s, model_weight k, int layer, gguf_dtype dt, owned *o,
                      err_t *err) {
    char hf[128], name[128];
    model_weight_name(k, layer, hf, sizeof hf);
    gguf_name(k, layer, name, sizeof name);
    const sft_tensor *t = sft_find(s, hf);
    if (!t) return err_set(err, "missing tensor %s", hf);
    if (t->ndim == 1) dt = GGUF_F32;
    const void *d = tensor_as(t, dt, o, err);
    if (!d) return -1;
    int64_t ne[2] = {t->shape[t->ndim - 1], t->ndim == 2 ? t->shape[0] : 1};
    gguf_writer_tensor(w, name, dt, t->ndim, ne, d);
    return 0;
}

static int add_weights(gguf_writer *w, const model_config *cfg, const sft *s, gguf_dtype dt, owned *o,
                       err_t *err) {
    for (int k = 0; k < MODEL_W_COUNT; k++) {
        if (model_weight_per_layer((model_weight)k) || !model_weight_required(cfg, (model_weight)k)) continue;
        if (add_weight(w, s, (model_weight)k, 0, dt, o, err) < 0) return -1;
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++)
        for (int k = 0; k < MODEL_W_COUNT; k++)
            if (model_weight_per_layer((model_weight)k) && model_weight_required(cfg, (model_weight)k) &&
                add_weight(w, s, (model_weight)k, l, dt, o, err) < 0)
                return -1;
    return 0;
}

// ---- metadata ----------------------------------------------------------------

static void add_hparams(gguf_writer *w, const model_config *cfg) {
    char key[96];
    const char *a = arch_name(cfg);
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, a), key)
    gguf_writer_u32(w, KEY("context_length"), (uint32_t)cfg->max_position_embeddings);
    gguf_writer_u32(w, KEY("embedding_length"), (uint32_t)cfg->hidden_size);
    gguf_writer_u32(w, KEY("block_count"), (uint32_t)cfg->num_hidden_layers);
    gguf_writer_u32(w, KEY("feed_forward_length"), (uint32_t)cfg->intermediate_size);
    gguf_writer_u32(w, KEY("attention.head_count"), (uint32_t)cfg->num_attention_heads);
    gguf_writer_u32(w, KEY("attention.head_count_kv"), (uint32_t)cfg->num_key_value_heads);
    gguf_writer_u32(w, KEY("attention.key_length"), (uint32_t)cfg->head_dim);
    gguf_writer_u32(w, KEY("attention.value_length"), (uint32_t)cfg->head_dim);
    gguf_writer_f32(w, KEY("rope.freq_base"), (float)cfg->rope.theta);
    gguf_writer_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)cfg->rms_norm_eps);
#undef KEY
}

typedef struct vocab {
    int n;
    char **tokens;  // by id (n)
    int32_t *types; // by id (n)
    char **merges;
    int n_merges;
    int pad;         // -1 if none
    char *chat_template; // NULL if none
} vocab;

static void vocab_free(vocab *v) {
    for (int i = 0; v->tokens && i < v->n; i++) free(v->tokens[i]);
    for (int i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->types);
    free(v->merges);
    free(v->chat_template);
}

static int set_token(vocab *v, int id, const char *text, int type, const char *file, err_t *err) {
    if (id < 0 || id >= v->n)
        return err_set(err, "%s: token %s has id %d outside the model's vocab %d", file, text, id, v->n);
    free(v->tokens[id]);
    if (!(v->tokens[id] = strdup(text))) return err_set(err, "%s: out of memory", file);
    v->types[id] = type;
    return 0;
}

// model.vocab, then added_tokens over it; ids left empty become [PADn].
static int read_tokens(vocab *v, const cJSON *tok, const char *file, err_t *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(cJSON_GetObjectItem(tok, "model"), "vocab")) {
        if (!cJSON_IsNumber(e)) return err_set(err, "%s: model.vocab.%s: expected an id", file, e->string);
        if (set_token(v, e->valueint, e->string, TOK_NORMAL, file, err) < 0) return -1;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(tok, "added_tokens")) {
        const cJSON *c = cJSON_GetObjectItem(e, "content"), *id = cJSON_GetObjectItem(e, "id");
        if (!cJSON_IsString(c) || !cJSON_IsNumber(id))
            return err_set(err, "%s: added_tokens: expected content and id", file);
        int type = cJSON_IsTrue(cJSON_GetObjectItem(e, "special")) ? TOK_CONTROL : TOK_USER_DEFINED;
        if (set_token(v, id->valueint, c->valuestring, type, file, err) < 0) return -1;
    }
    for (int i = 0; i < v->n; i++) {
        if (v->tokens[i]) continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%d]", i);
        if (set_token(v, i, pad, TOK_UNUSED, file, err) < 0) return -1;
    }
    return 0;
}

// model.merges as "a b" strings; newer files write each as ["a", "b"].
static int read_merges(vocab *v, const cJSON *tok, const char *file, err_t *err) {
    const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(tok, "model"), "merges"), *e;
    int n = cJSON_GetArraySize(m);
    if (!cJSON_IsArray(m) || n == 0) return err_set(err, "%s: model.merges: expected a non-empty list", file);
    if (!(v->merges = calloc((size_t)n, sizeof *v->merges))) return err_set(err, "%s: out of memory", file);
    cJSON_ArrayForEach(e, m) {
        const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
        char *s = NULL;
        if (cJSON_IsString(e)) {
            s = strdup(e->valuestring);
        } else if (cJSON_IsString(a) && cJSON_IsString(b)) {
            size_t sz = strlen(a->valuestring) + strlen(b->valuestring) + 2;
            if ((s = malloc(sz))) snprintf(s, sz, "%s %s", a->valuestring, b->valuestring);
        } else if (!cJSON_IsArray(e)) {
            return err_set(err, "%s: model.merges[%d]: expected \"a b\" or [a, b]", file, v->n_merges);
        }
        if (!s) return err_set(err, "%s: out of memory", file);
        v->merges[v->n_merges++] = s;
    }
    return 0;
}

static int find_token(const vocab *v, const char *text) {
    for (int i = v->n - 1; i >= 0; i--) // added tokens sit at the end
        if (strcmp(v->tokens[i], text) == 0) return i;
    return -1;
}

// tokenizer_config.json: pad_token (a string or {"content": ...}) and chat_template.
static int read_tokenizer_config(vocab *v, const cJSON *tc) {
    const cJSON *pad = cJSON_GetObjectItem(tc, "pad_token");
    if (cJSON_IsObject(pad)) pad = cJSON_GetObjectItem(pad, "content");
    v->pad = cJSON_IsString(pad) ? find_token(v, pad->valuestring) : -1;
    const cJSON *t = cJSON_GetObjectItem(tc, "chat_template");
    if (cJSON_IsString(t) && !(v->chat_template = strdup(t->valuestring))) return -1;
    return 0;
}

static cJSON *read_json(const char *dir, const char *name, err_t *err) {
    char *path = util_path_join(dir, name);
    size_t len;
    char *text = path ? util_read_file(path, &len, err) : NULL;
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    if (text && !j) err_set(err, "%s: invalid JSON", path);
    free(text);
    free(path);
    return j;
}

static int vocab_load(vocab *v, const char *dir, int n, err_t *err) {
    *v = (vocab){.n = n, .pad = -1};
    cJSON *tok = read_json(dir, "tokenizer.json", err);
    cJSON *tc = tok ? read_json(dir, "tokenizer_config.json", err) : NULL;
    int rc = -1;
    v->tokens = calloc((size_t)n, sizeof *v->tokens);
    v->types = calloc((size_t)n, sizeof *v->types);
    if (!tc) goto done;
    if (!v->tokens || !v->types) {
        err_set(err, "%s: out of memory", dir);
        goto done;
    }
    if (read_tokens(v, tok, "tokenizer.json", err) < 0 || read_merges(v, tok, "tokenizer.json", err) < 0) goto done;
    if (read_tokenizer_config(v, tc) < 0) {
        err_set(err, "%s: out of memory", dir);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(tok);
    cJSON_Delete(tc);
    if (rc < 0) err_wrap(err, "%s", dir);
    return rc;
}

static void add_vocab(gguf_writer *w, const model_config *cfg, const vocab *v) {
    gguf_writer_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_str(w, "tokenizer.ggml.pre", "qwen2");
    gguf_writer_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, (size_t)v->n);
    gguf_writer_arr_i32(w, "tokenizer.ggml.token_type", v->types, (size_t)v->n);
    gguf_writer_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, (size_t)v->n_merges);
    if (cfg->n_eos > 0) gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)cfg->eos_token_ids[0]);
    if (cfg->bos_token_id >= 0) gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)cfg->bos_token_id);
    int pad = cfg->pad_token_id >= 0 ? cfg->pad_token_id : v->pad;
    if (pad >= 0) gguf_writer_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad);
    gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", 0);
    gguf_writer_bool(w, "tokenizer.ggml.add_eos_token", 0);
    if (v->chat_template) gguf_writer_str(w, "tokenizer.chat_template", v->chat_template);
}

// The folder's last component, for general.name ("model" when empty).
static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    s = s ? s + 1 : path;
    return *s ? s : "model";
}

static int check_supported(const model_config *cfg, const char *dir, err_t *err) {
    if (cfg->arch != MODEL_ARCH_QWEN2 && cfg->arch != MODEL_ARCH_QWEN3)
        return err_set(err, "%s: %s: only Qwen2 and Qwen3 convert (Llama's q/k rows would need a permutation)", dir,
                       model_arch_name(cfg->arch));
    if (cfg->rope.type != MODEL_ROPE_DEFAULT) return err_set(err, "%s: only the default RoPE converts", dir);
    if (cfg->quant != MODEL_QUANT_NONE)
        return err_set(err, "%s: a bitsandbytes checkpoint (expected bf16/f32 weights)", dir);
    return 0;
}

// ---- commands ----------------------------------------------------------------

static int convert_model(const char *dir, const char *out, gguf_dtype dt, err_t *err) {
    model_config cfg;
    if (model_config_load(dir, &cfg, err) < 0 || check_supported(&cfg, dir, err) < 0) return -1;
    sft *s = sft_open(dir, err);
    if (!s) return -1;
    vocab v = {0};
    owned o = {0};
    gguf_writer *w = gguf_writer_new();
    int rc = -1;
    if (!w) {
        err_set(err, "out of memory");
        goto done;
    }
    if (model_config_check_weights(&cfg, s, err) < 0 || vocab_load(&v, dir, cfg.vocab_size, err) < 0) goto done;
    gguf_writer_str(w, "general.architecture", arch_name(&cfg));
    gguf_writer_str(w, "general.type", "model");
    gguf_writer_str(w, "general.name", base_name(dir));
    gguf_writer_u32(w, "general.file_type", dt == GGUF_F32 ? 0 : 32); // llama.cpp: ALL_F32, MOSTLY_BF16
    add_hparams(w, &cfg);
    add_vocab(w, &cfg, &v);
    if (add_weights(w, &cfg, s, dt, &o, err) < 0) goto done;
    rc = gguf_writer_write(w, out, err);
    if (rc == 0) printf("gguf: wrote %s (%s, %d tensors, vocab %d, %d merges)\n", out, arch_name(&cfg),
                        gguf_writer_n_tensors(w), v.n, v.n_merges);
done:
    gguf_writer_free(w);
    owned_free(&o);
    vocab_free(&v);
    sft_close(s);
    return rc;
}

// One adapted projection: lora_a and lora_b, B rescaled to llama.cpp's alpha / r.
static int add_lora_pair(gguf_writer *w, const lora_module *m, const char *base, float alpha, gguf_dtype dt,
                         owned *o, err_t *err) {
    char name[160];
    float ratio = m->scale / (alpha / (float)m->rank);
    int64_t na = (int64_t)m->rank * m->in, nb = (int64_t)m->out * m->rank;
    const float *a = m->A, *b = m->B;
    if (ratio != 1.0f) {
        float *s = own(o, malloc((size_t)nb * sizeof *s));
        if (!s) return err_set(err, "%s: out of memory", base);
        for (int64_t i = 0; i < nb; i++) s[i] = b[i] * ratio;
        b = s;
    }
    const void *da = a, *db = b;
    if (dt == GGUF_BF16) {
        uint16_t *ha = own(o, malloc((size_t)na * 2)), *hb = own(o, malloc((size_t)nb * 2));
        if (!ha || !hb) return err_set(err, "%s: out of memory", base);
        for (int64_t i = 0; i < na; i++) ha[i] = util_f32_to_bf16(a[i]);
        for (int64_t i = 0; i < nb; i++) hb[i] = util_f32_to_bf16(b[i]);
        da = ha, db = hb;
    }
    int64_t nea[2] = {m->in, m->rank}, neb[2] = {m->rank, m->out};
    snprintf(name, sizeof name, "%s.lora_a", base);
    gguf_writer_tensor(w, name, dt, 2, nea, da);
    snprintf(name, sizeof name, "%s.lora_b", base);
    gguf_writer_tensor(w, name, dt, 2, neb, db);
    return 0;
}

static int convert_lora(const char *model_dir, const char *dir, const char *out, gguf_dtype dt, err_t *err) {
    model_config cfg;
    if (model_config_load(model_dir, &cfg, err) < 0 || check_supported(&cfg, model_dir, err) < 0) return -1;
    lora_adapter *a = lora_load(dir, &cfg, err);
    if (!a) return -1;
    gguf_writer *w = gguf_writer_new();
    owned o = {0};
    int rc = -1;
    float alpha = (float)a->config.alpha;
    if (!w || !(alpha > 0)) {
        err_set(err, "%s: %s", dir, w ? "lora_alpha must be above 0" : "out of memory");
        goto done;
    }
    gguf_writer_str(w, "general.architecture", arch_name(&cfg));
    gguf_writer_str(w, "general.type", "adapter");
    gguf_writer_str(w, "general.name", base_name(dir));
    gguf_writer_str(w, "adapter.type", "lora");
    gguf_writer_f32(w, "adapter.lora.alpha", alpha);
    for (int l = 0; l < a->n_layers; l++)
        for (int k = 0; k < MODEL_LIN_COUNT; k++) {
            const lora_module *m = lora_at(a, l, (model_linear)k);
            char base[128];
            if (m->rank == 0) continue;
            gguf_name(model_weight_of_linear((model_linear)k), l, base, sizeof base);
            if (add_lora_pair(w, m, base, alpha, dt, &o, err) < 0) goto done;
        }
    rc = gguf_writer_write(w, out, err);
    if (rc == 0) printf("gguf: wrote %s (LoRA, %d tensors, alpha %g)\n", out, gguf_writer_n_tensors(w), alpha);
done:
    gguf_writer_free(w);
    owned_free(&o);
    lora_free(a);
    return rc;
}

static void dump_kv(const gguf_kv *kv, int all) {
    static const char *const tn[GGUF_T_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                                 "bool", "str", "arr", "u64", "i64", "f64"};
    printf("kv %s %s", kv->key, tn[kv->type]);
    if (kv->type == GGUF_T_STR) {
        int n = (int)strcspn(kv->str, "\n");
        printf(" %.*s%s\n", all || n < 80 ? n : 80, kv->str, kv->str[n] ? " ..." : "");
        return;
    }
    if (kv->type != GGUF_T_ARR) {
        if (kv->type == GGUF_T_F32 || kv->type == GGUF_T_F64) printf(" %.9g\n", kv->num.f);
        else if (kv->type == GGUF_T_I8 || kv->type == GGUF_T_I16 || kv->type == GGUF_T_I32 || kv->type == GGUF_T_I64)
            printf(" %lld\n", (long long)kv->num.i);
        else printf(" %llu\n", (unsigned long long)kv->num.u);
        return;
    }
    printf("[%s] %llu", tn[kv->arr_type], (unsigned long long)kv->n);
    for (uint64_t i = 0; i < kv->n && (all || i < 3); i++) {
        if (kv->strs) printf(" %s", kv->strs[i]);
        else if (kv->arr_type == GGUF_T_I32) {
            int32_t x;
            memcpy(&x, (const char *)kv->arr + 4 * i, 4);
            printf(" %d", x);
        }
    }
    printf("\n");
}

static int dump(const char *path, int all, err_t *err) {
    gguf_file *f = gguf_open(path, err);
    if (!f) return -1;
    printf("version %u tensors %lld kv %lld alignment %u data_offset %llu size %zu\n", f->version,
           (long long)f->n_tensors, (long long)f->n_kv, f->alignment, (unsigned long long)f->data_offset, f->size);
    for (int64_t i = 0; i < f->n_kv; i++) dump_kv(&f->kv[i], all);
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        // 256 elements are whole blocks of every known type: 0 bytes = unknown.
        if (gguf_dtype_bytes(t->type, 256)) printf("tensor %s %s", t->name, gguf_dtype_name(t->type));
        else printf("tensor %s type%u", t->name, t->type);
        printf(" [%lld", (long long)t->ne[0]);
        for (int d = 1; d < t->ndim; d++) printf(", %lld", (long long)t->ne[d]);
        printf("] offset %llu bytes %llu\n", (unsigned long long)t->offset, (unsigned long long)t->nbytes);
    }
    gguf_close(f);
    return 0;
}

// One tensor of the model against the file's: same shape, same values.
static int check_one(const gguf_file *f, const sft *s, model_weight k, int layer, float *a, float *b, err_t *err) {
    char hf[128], name[128];
    model_weight_name(k, layer, hf, sizeof hf);
    gguf_name(k, layer, name, sizeof name);
    const sft_tensor *t = sft_find(s, hf);
    const gguf_tensor *g = gguf_find_tensor(f, name);
    if (!t || !g) return err_set(err, "%s: missing", t ? name : hf);
    int64_t ne0 = t->shape[t->ndim - 1], ne1 = t->ndim == 2 ? t->shape[0] : 1;
    if (g->ndim != t->ndim || g->ne[0] != ne0 || g->ne[1] != ne1)
        return err_set(err, "%s: shape differs from %s", name, hf);
    if (g->type != GGUF_F32 && g->type != GGUF_BF16)
        return err_set(err, "%s: %s (expected F32 or BF16)", name, gguf_dtype_name(g->type));
    if (sft_to_f32(t, a, err) < 0) return -1;
    for (int64_t i = 0; i < t->numel; i++) {
        uint16_t h;
        if (g->type == GGUF_BF16) memcpy(&h, (const char *)g->data + 2 * i, 2), b[i] = util_bf16_to_f32(h);
        else memcpy(&b[i], (const char *)g->data + 4 * i, 4);
        if (a[i] != b[i]) return err_set(err, "%s[%lld]: %g, %s has %g", name, (long long)i, b[i], hf, a[i]);
    }
    return 0;
}

static int check(const char *dir, const char *path, err_t *err) {
    model_config cfg;
    if (model_config_load(dir, &cfg, err) < 0) return -1;
    sft *s = sft_open(dir, err);
    gguf_file *f = s ? gguf_open(path, err) : NULL;
    size_t max = 1;
    for (int i = 0; s && i < sft_count(s); i++)
        if ((size_t)sft_at(s, i)->numel > max) max = (size_t)sft_at(s, i)->numel;
    float *a = malloc(max * sizeof *a), *b = malloc(max * sizeof *b);
    int rc = f && a && b ? 0 : -1, n = 0;
    if (f && (!a || !b)) err_set(err, "out of memory");
    for (int l = 0; rc == 0 && l < cfg.num_hidden_layers; l++)
        for (int k = 0; rc == 0 && k < MODEL_W_COUNT; k++) {
            int per = model_weight_per_layer((model_weight)k);
            if (!model_weight_required(&cfg, (model_weight)k) || (!per && l > 0)) continue;
            rc = check_one(f, s, (model_weight)k, l, a, b, err);
            n++;
        }
    if (rc == 0 && f->n_tensors != n)
        rc = err_set(err, "%s: %lld tensors, the model has %d", path, (long long)f->n_tensors, n);
    if (rc == 0) printf("gguf: %s: all %d tensors equal %s's\n", path, n, dir);
    free(a);
    free(b);
    gguf_close(f);
    sft_close(s);
    return rc;
}

static void usage(void) {
    fprintf(stderr, "usage: gguf model DIR OUT.gguf [--dtype bf16|f32]\n"
                    "       gguf lora MODEL_DIR ADAPTER_DIR OUT.gguf [--dtype f32|bf16]\n"
                    "       gguf dump FILE [--all]\n"
                    "       gguf check MODEL_DIR FILE\n");
    exit(2);
}

// --dtype after the positional arguments; def when absent.
static gguf_dtype dtype_arg(int argc, char **argv, int at, gguf_dtype def) {
    if (argc == at) return def;
    if (argc != at + 2 || strcmp(argv[at], "--dtype") != 0) usage();
    if (strcmp(argv[at + 1], "bf16") == 0) return GGUF_BF16;
    if (strcmp(argv[at + 1], "f32") == 0) return GGUF_F32;
    fprintf(stderr, "gguf: --dtype %s: expected bf16 or f32\n", argv[at + 1]);
    exit(2);
}

int main(int argc, char **argv) {
    err_t err = {{0}};
    int rc;
    if (argc < 3) usage();
    const char *cmd = argv[1];
    if (strcmp(cmd, "model") == 0 && argc >= 4)
        rc = convert_model(argv[2], argv[3], dtype_arg(argc, argv, 4, GGUF_BF16), &err);
    else if (strcmp(cmd, "lora") == 0 && argc >= 5)
        rc = convert_lora(argv[2], argv[3], argv[4], dtype_arg(argc, argv, 5, GGUF_F32), &err);
    else if (strcmp(cmd, "dump") == 0 && (argc == 3 || (argc == 4 && strcmp(argv[3], "--all") == 0)))
        rc = dump(argv[2], argc == 4, &err);
    else if (strcmp(cmd, "check") == 0 && argc == 4) rc = check(argv[2], argv[3], &err);
    else usage();
    if (rc < 0) fprintf(stderr, "gguf: %s\n", err.msg);
    return rc < 0 ? 1 : 0;
}
