#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nf4.h"
#include "safetensors.h"
#include "util.h"

// ---- the model -----------------------------------------------------------------

typedef struct model_layer {
    const float *attn_norm, *mlp_norm; // (C)
    const float *q_norm, *k_norm;      // (head_dim), Qwen3 only
    bk_weight lin[MODEL_LIN_COUNT];    // q, k, v, o, gate, up, down: (out, in)
    const float *bias[MODEL_LIN_COUNT];// q/k/v/o bias (out) or NULL
} model_layer;

// One adapted projection of an adapter slot (A, B in backend memory, of
// the slot's dtype).
typedef struct slot_module {
    int rank;
    float scale;
    const void *A, *B; // (rank, in), (out, rank)
} slot_module;

typedef struct model_slot {
    int used;
    int max_rank;
    bk_dtype dtype;    // of every A and B: model_opts.lora_dtype at model_adapter_set
    slot_module *mods; // n_layers * MODEL_LIN_COUNT
    void *mem;         // backend memory holding every A and B
} model_slot;

// The activations of one forward of up to max_tokens tokens, carved from one
// backend allocation (llm.c style). Shapes with T = max_tokens.
typedef struct model_acts {
    float *x;      // (T, C) residual stream
    float *xn;     // (T, C) normed input of a block; final hidden rows for logits
    float *q;      // (T, H * D)
    float *k, *v;  // (T, KVH * D)
    float *att;    // (T, H * D) attention output
    float *ao;     // (T, C) attention / MLP block output before the residual add
    float *gate;   // (T, I) gate_proj, then silu(gate) * up
    float *up;     // (T, I)
    float *logits; // (T, V) only for backends whose memory is not host memory
    // The step's metadata on the backend: meta holds 5 * bk_step_stride(max
    // tokens) int32; each forward lays tok, pos, seq, slot, rows out in it
    // at its own T's stride (backend.h "a forward step's metadata") and
    // points these at the arrays.
    int32_t *meta;
    int32_t *tok, *pos, *seq, *slot, *rows;
    void *mem;
} model_acts;

// A run of consecutive batch tokens sharing an adapter slot.
typedef struct slot_run {
    int start, count, slot;
} slot_run;

struct model {
    model_config cfg;
    model_opts opts;
    const bk_ops *bk;
    bk_weight embed;   // (V, C)
    bk_weight lm_head; // (V, C); the embedding (mem NULL) when tied
    const float *norm; // (C)
    model_layer *layers;
    const float *inv_freq; // (D / 2)
    void **allocs;         // every backend allocation of the weights
    int n_allocs, cap_allocs;
    int64_t weight_bytes;

    model_slot *slots;
    float *lora_v;     // (max_tokens, lora_rank_cap) LoRA shrink scratch
    int lora_rank_cap; // opts.max_lora_rank

    int max_tokens;
    model_acts a;
    // host scratch for one forward (max_tokens each): h_meta is the staging
    // buffer laid out as a.meta, uploaded once per forward; h_slot and
    // h_rows point at its slot and rows arrays.
    int32_t *h_meta;
    int32_t *h_slot, *h_rows;
    slot_run *runs;
    bk_lora_seg *segs;
    // Logits kept in backend memory (model_forward with logits NULL): on a
    // device backend the activations' a.logits; on the CPU this buffer of
    // logits_rows rows (model_reserve_logits).
    float *host_logits;
    int logits_rows;
};

model_opts model_opts_default(void) {
    model_opts o = {.quant = MODEL_LOAD_NF4,
                    .nf4_double_quant = 1,
                    .max_tokens = 512,
                    .max_slots = 8,
                    .max_lora_rank = MODEL_DEFAULT_MAX_LORA_RANK,
                    .bk = NULL};
    return o;
}

const model_config *model_get_config(const model *m) { return &m->cfg; }
int64_t model_weight_bytes(const model *m) { return m->weight_bytes; }
int model_max_tokens(const model *m) { return m->max_tokens; }
int model_max_slots(const model *m) { return m->opts.max_slots; }
int model_max_lora_rank(const model *m) { return m->opts.max_lora_rank; }

// ---- loading ---------------------------------------------------------------------

// Allocates backend memory that lives as long as the model.
static void *walloc(model *m, size_t bytes, err_t *err) {
    if (m->n_allocs == m->cap_allocs) {
        int cap = m->cap_allocs ? 2 * m->cap_allocs : 64;
        void **p = realloc(m->allocs, (size_t)cap * sizeof *p);
        if (!p) {
            err_set(err, "out of memory");
            return NULL;
        }
        m->allocs = p;
        m->cap_allocs = cap;
    }
    void *p = m->bk->alloc(bytes, err);
    if (!p) return NULL;
    m->allocs[m->n_allocs++] = p;
    m->weight_bytes += (int64_t)bytes;
    return p;
}

// Converts t to f32 in backend memory (directly when that is host memory).
static float *upload_f32(model *m, const sft_tensor *t, err_t *err) {
    float *dst = walloc(m, (size_t)t->numel * sizeof(float), err);
    if (!dst) return NULL;
    if (m->bk->host_memory) return sft_to_f32(t, dst, err) < 0 ? NULL : dst;
    float *tmp = malloc((size_t)t->numel * sizeof(float));
    if (!tmp) {
        err_set(err, "tensor %s: out of memory", t->name);
        return NULL;
    }
    int rc = sft_to_f32(t, tmp, err);
    if (rc == 0) m->bk->upload(dst, tmp, (size_t)t->numel * sizeof(float));
    free(tmp);
    return rc < 0 ? NULL : dst;
}

static const sft_tensor *find(const sft *s, model_weight w, int layer, err_t *err) {
    char name[160];
    model_weight_name(w, layer, name, sizeof name);
    const sft_tensor *t = sft_find(s, name);
    if (!t) err_set(err, "missing tensor %s", name);
    return t;
}

// A norm or bias vector as f32.
static const float *load_vec(model *m, const sft *s, model_weight w, int layer, err_t *err) {
    const sft_tensor *t = find(s, w, layer, err);
    return t ? upload_f32(m, t, err) : NULL;
}

// A dense 2-D weight: bf16 stays bf16, anything else becomes f32.
static int load_dense(model *m, const sft_tensor *t, bk_weight *w, err_t *err) {
    memset(w, 0, sizeof *w);
    w->rows = t->shape[0];
    w->cols = t->ndim > 1 ? t->shape[1] : 1;
    if (t->dtype == SFT_BF16) {
        void *dst = walloc(m, t->nbytes, err);
        if (!dst) return -1;
        m->bk->upload(dst, t->data, t->nbytes);
        w->type = BK_W_BF16;
        w->data = dst;
        return 0;
    }
    const float *dst = upload_f32(m, t, err);
    if (!dst) return -1;
    w->type = BK_W_F32;
    w->data = dst;
    return 0;
}

// Copies an NF4 tensor's arrays into one backend allocation and points a
// bk_weight at them.
static int upload_nf4(model *m, const nf4_tensor *t, bk_weight *w, err_t *err) {
    size_t packed = (size_t)(t->numel / 2);
    size_t off_abs = (packed + 63) / 64 * 64;
    size_t abs_bytes = t->nested ? (size_t)t->nblocks : (size_t)t->nblocks * sizeof(float);
    size_t off_nested = (off_abs + abs_bytes + 63) / 64 * 64;
    size_t total = off_nested + (t->nested ? (size_t)t->nnested * sizeof(float) : 0);
    uint8_t *mem = walloc(m, total, err);
    if (!mem) return -1;
    memset(w, 0, sizeof *w);
    w->type = BK_W_NF4;
    w->rows = t->rows;
    w->cols = t->cols;
    w->nf4 = *t;
    w->nf4.owned = NULL;
    m->bk->upload(mem, t->packed, packed);
    w->nf4.packed = mem;
    if (t->nested) {
        m->bk->upload(mem + off_abs, t->absmax_q, abs_bytes);
        m->bk->upload(mem + off_nested, t->nested_absmax, (size_t)t->nnested * sizeof(float));
        w->nf4.absmax_q = mem + off_abs;
        w->nf4.nested_absmax = (const float *)(mem + off_nested);
    } else {
        m->bk->upload(mem + off_abs, t->absmax, abs_bytes);
        w->nf4.absmax = (const float *)(mem + off_abs);
    }
    return 0;
}

// A decoder linear weight: from a bnb-4bit checkpoint, quantized here, or dense.
static int load_linear(model *m, const sft *s, model_weight kind, int layer, bk_weight *w, err_t *err) {
    char name[160];
    model_weight_name(kind, layer, name, sizeof name);
    nf4_tensor t;
    memset(&t, 0, sizeof t);
    if (m->cfg.quant == MODEL_QUANT_BNB_NF4) {
        if (nf4_from_bnb(s, name, &t, err) < 0) return -1;
    } else {
        const sft_tensor *st = sft_find(s, name);
        if (!st) return err_set(err, "missing tensor %s", name);
        if (m->opts.quant == MODEL_LOAD_NONE) return load_dense(m, st, w, err);
        float *f = malloc((size_t)st->numel * sizeof(float));
        if (!f) return err_set(err, "tensor %s: out of memory", name);
        int rc = sft_to_f32(st, f, err);
        if (rc == 0) rc = nf4_quantize(f, st->shape[0], st->shape[1], m->opts.nf4_double_quant, &t, err);
        free(f);
        if (rc < 0) return err_wrap(err, "tensor %s", name);
        t.dtype = st->dtype;
    }
    int rc = upload_nf4(m, &t, w, err);
    nf4_free(&t);
    return rc;
}

// inv_freq (D/2) as transformers' ROPE_INIT_FUNCTIONS compute it in float32:
// default 1 / theta^(2i/D); linear divides by factor; llama3 as
// _compute_llama3_parameters (low-frequency bands divided by factor, a
// smooth blend between the two wavelength bounds).
static void rope_inv_freq(const model_rope *r, int D, float *inv) {
    for (int i = 0; i < D / 2; i++) inv[i] = 1.0f / powf((float)r->theta, (float)(2 * i) / (float)D);
    if (r->type == MODEL_ROPE_LINEAR)
        for (int i = 0; i < D / 2; i++) inv[i] /= (float)r->factor;
    if (r->type != MODEL_ROPE_LLAMA3) return;
    float factor = (float)r->factor, lo = (float)r->low_freq_factor;
    float old = (float)r->original_max_position_embeddings;
    float low_wavelen = (float)((double)r->original_max_position_embeddings / r->low_freq_factor);
    float high_wavelen = (float)((double)r->original_max_position_embeddings / r->high_freq_factor);
    float span = (float)(r->high_freq_factor - r->low_freq_factor);
    for (int i = 0; i < D / 2; i++) {
        float wavelen = (float)(2.0 * M_PI) / inv[i];
        float f = wavelen > low_wavelen ? inv[i] / factor : inv[i];
        float smooth = (old / wavelen - lo) / span;
        float smoothed = (1.0f - smooth) * f / factor + smooth * f;
        int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        inv[i] = medium ? smoothed : f;
    }
}

static int load_layer(model *m, const sft *s, int l, err_t *err) {
    model_layer *L = &m->layers[l];
    const model_config *c = &m->cfg;
    if (!(L->attn_norm = load_vec(m, s, MODEL_W_ATTN_NORM, l, err))) return -1;
    if (!(L->mlp_norm = load_vec(m, s, MODEL_W_MLP_NORM, l, err))) return -1;
    if (c->qk_norm) {
        if (!(L->q_norm = load_vec(m, s, MODEL_W_Q_NORM, l, err))) return -1;
        if (!(L->k_norm = load_vec(m, s, MODEL_W_K_NORM, l, err))) return -1;
    }
    for (int i = 0; i < MODEL_LIN_COUNT; i++)
        if (load_linear(m, s, model_weight_of_linear((model_linear)i), l, &L->lin[i], err) < 0) return -1;
    static const model_weight bias_kind[4] = {MODEL_W_Q_BIAS, MODEL_W_K_BIAS, MODEL_W_V_BIAS, MODEL_W_O_BIAS};
    for (int i = 0; i < 4; i++) {
        if (!model_weight_required(c, bias_kind[i])) continue;
        if (!(L->bias[i] = load_vec(m, s, bias_kind[i], l, err))) return -1;
    }
    return 0;
}

static int load_weights(model *m, const sft *s, err_t *err) {
    const model_config *c = &m->cfg;
    const sft_tensor *t;
    if (!(t = find(s, MODEL_W_EMBED, 0, err)) || load_dense(m, t, &m->embed, err) < 0) return -1;
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
        m->lm_head.mem = NULL;
    } else if (!(t = find(s, MODEL_W_LM_HEAD, 0, err)) || load_dense(m, t, &m->lm_head, err) < 0) {
        return -1;
    }
    if (m->opts.lm_head_q8) {
        void *mem = walloc(m, bk_weight_q8_bytes(m->lm_head.rows, m->lm_head.cols), err);
        if (!mem || bk_weight_q8(m->bk, &m->lm_head, "lm_head (--lm-head q8)", mem, &m->lm_head, err) < 0) return -1;
    }
    if (!(m->norm = load_vec(m, s, MODEL_W_NORM, 0, err))) return -1;
    for (int l = 0; l < c->num_hidden_layers; l++)
        if (load_layer(m, s, l, err) < 0) return -1;
    float inv[BK_MAX_HEAD_DIM / 2];
    rope_inv_freq(&c->rope, c->head_dim, inv);
    float *dst = walloc(m, (size_t)(c->head_dim / 2) * sizeof(float), err);
    if (!dst) return -1;
    m->bk->upload(dst, inv, (size_t)(c->head_dim / 2) * sizeof(float));
    m->inv_freq = dst;
    return 0;
}

static int check_supported(const model_config *c, const char *dir, err_t *err) {
    if (c->head_dim > BK_MAX_HEAD_DIM || c->head_dim % 2)
        return err_set(err, "%s/config.json: head_dim %d: expected an even value <= %d", dir, c->head_dim,
                       BK_MAX_HEAD_DIM);
    if (c->num_attention_heads % c->num_key_value_heads)
        return err_set(err, "%s/config.json: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                       dir, c->num_attention_heads, c->num_key_value_heads);
    return 0;
}

model *model_load(const char *dir, const model_opts *o, err_t *err) {
    model *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(err, "out of memory");
        return NULL;
    }
    m->opts = o ? *o : model_opts_default();
    m->bk = m->opts.bk ? m->opts.bk : bk_cpu();
    if (m->opts.max_slots < 0) m->opts.max_slots = 0;
    if (m->opts.max_lora_rank <= 0) m->opts.max_lora_rank = MODEL_DEFAULT_MAX_LORA_RANK;
    if (m->opts.max_lora_rank > LORA_MAX_RANK) m->opts.max_lora_rank = LORA_MAX_RANK;
    m->lora_rank_cap = m->opts.max_lora_rank;
    sft *s = NULL;
    if (model_config_load(dir, &m->cfg, err) < 0 || check_supported(&m->cfg, dir, err) < 0) goto fail;
    if (!(s = sft_open(dir, err))) goto fail;
    if (model_config_check_weights(&m->cfg, s, err) < 0) goto fail;
    m->layers = calloc((size_t)m->cfg.num_hidden_layers, sizeof *m->layers);
    m->slots = calloc((size_t)(m->opts.max_slots ? m->opts.max_slots : 1), sizeof *m->slots);
    if (!m->layers || !m->slots) {
        err_set(err, "out of memory");
        goto fail;
    }
    if (load_weights(m, s, err) < 0) {
        err_wrap(err, "%s", dir);
        goto fail;
    }
    sft_close(s);
    s = NULL;
    if (model_reserve(m, m->opts.max_tokens > 0 ? m->opts.max_tokens : 512, err) < 0) goto fail;
    return m;
fail:
    sft_close(s);
    model_free(m);
    return NULL;
}

static void acts_free(model *m) {
    if (m->a.mem) m->bk->free(m->a.mem);
    memset(&m->a, 0, sizeof m->a);
    free(m->h_meta);
    free(m->runs);
    free(m->segs);
    m->h_meta = m->h_slot = m->h_rows = NULL;
    m->runs = NULL;
    m->segs = NULL;
}

void model_free(model *m) {
    if (!m) return;
    for (int i = 0; i < m->opts.max_slots && m->slots; i++) model_adapter_clear(m, i);
    acts_free(m);
    if (m->lora_v) m->bk->free(m->lora_v);
    if (m->host_logits) m->bk->free(m->host_logits);
    for (int i = 0; i < m->n_allocs; i++) m->bk->free(m->allocs[i]);
    free(m->allocs);
    free(m->layers);
    free(m->slots);
    free(m);
}

// ---- activations and adapter slots ------------------------------------------------

// (Re)allocates the LoRA shrink scratch for max_tokens x rank_cap.
static int lora_scratch(model *m, int max_tokens, int rank_cap, err_t *err) {
    if (rank_cap <= 0) rank_cap = 1;
    float *v = m->bk->alloc((size_t)max_tokens * (size_t)rank_cap * sizeof(float), err);
    if (!v) return -1;
    if (m->lora_v) m->bk->free(m->lora_v);
    m->lora_v = v;
    m->lora_rank_cap = rank_cap;
    return 0;
}

int model_reserve(model *m, int max_tokens, err_t *err) {
    const model_config *c = &m->cfg;
    if (max_tokens < 1) return err_set(err, "model_reserve: max_tokens %d must be >= 1", max_tokens);
    int64_t T = max_tokens, C = c->hidden_size, QD = (int64_t)c->num_attention_heads * c->head_dim;
    int64_t KVD = (int64_t)c->num_key_value_heads * c->head_dim, I = c->intermediate_size;
    int64_t V = m->bk->host_memory ? 0 : c->vocab_size;
    // float counts, each rounded to 16 floats (64 bytes)
    int64_t sizes[] = {T * C, T * C, T * QD, T * KVD, T * KVD, T * QD, T * C, T * I, T * I, T * V};
    int64_t nf = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) nf += (sizes[i] + 15) / 16 * 16;
    int64_t ni = 5 * (int64_t)bk_step_stride(max_tokens);
    acts_free(m);
    m->max_tokens = 0;
    void *mem = m->bk->alloc((size_t)nf * sizeof(float) + (size_t)ni * sizeof(int32_t), err);
    m->h_meta = calloc((size_t)ni, sizeof *m->h_meta); // zeroed: the padding uploaded is never garbage
    m->runs = malloc((size_t)T * sizeof *m->runs);
    m->segs = malloc((size_t)T * sizeof *m->segs);
    if (!mem || !m->h_meta || !m->runs || !m->segs) {
        if (mem) m->bk->free(mem);
        acts_free(m);
        return err_set(err, "model_reserve: out of memory for %d tokens of activations", max_tokens);
    }
    m->a.mem = mem;
    float *p = mem;
    float **slots[] = {&m->a.x, &m->a.xn, &m->a.q, &m->a.k, &m->a.v, &m->a.att, &m->a.ao, &m->a.gate, &m->a.up,
                       &m->a.logits};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        *slots[i] = sizes[i] ? p : NULL;
        p += (sizes[i] + 15) / 16 * 16;
    }
    m->a.meta = (int32_t *)p;
    if (lora_scratch(m, max_tokens, m->lora_rank_cap, err) < 0) {
        acts_free(m);
        return -1;
    }
    m->max_tokens = max_tokens;
    return 0;
}

int model_adapter_used(const model *m, int slot) {
    return slot >= 0 && slot < m->opts.max_slots && m->slots[slot].used;
}

void model_adapter_clear(model *m, int slot) {
    if (slot < 0 || slot >= m->opts.max_slots) return;
    model_slot *s = &m->slots[slot];
    if (s->mem) m->bk->free(s->mem);
    free(s->mods);
    memset(s, 0, sizeof *s);
}

// Refuses an adapter this model cannot run: a rank above max_lora_rank (the
// first module over it is named), or another base's shape.
static int check_adapter(const model *m, const lora_adapter *a, err_t *err) {
    if (a->max_rank > m->opts.max_lora_rank)
        for (int i = 0; i < a->n_layers * MODEL_LIN_COUNT; i++)
            if (a->modules[i].rank > m->opts.max_lora_rank)
                return err_set(err,
                               "adapter %s: rank %d (layer %d %s) is above this model's max_lora_rank %d "
                               "(raise max_lora_rank to serve it)",
                               a->name, a->modules[i].rank, i / MODEL_LIN_COUNT,
                               model_linear_name((model_linear)(i % MODEL_LIN_COUNT)), m->opts.max_lora_rank);
    if (a->n_layers != m->cfg.num_hidden_layers)
        return err_set(err, "adapter %s has %d layers, the model %d (an adapter for another base model)", a->name,
                       a->n_layers, m->cfg.num_hidden_layers);
    for (int l = 0; l < a->n_layers; l++)
        for (int i = 0; i < MODEL_LIN_COUNT; i++) {
            const lora_module *lm = lora_at(a, l, (model_linear)i);
            int out, in;
            model_linear_dims(&m->cfg, (model_linear)i, &out, &in);
            if (lm->rank > 0 && (lm->in != in || lm->out != out))
                return err_set(err,
                               "adapter %s: layer %d %s is [%d, %d], the model's [%d, %d] (an adapter for another "
                               "base model)",
                               a->name, l, model_linear_name((model_linear)i), lm->out, lm->in, out, in);
        }
    return 0;
}

// Uploads n f32 values to dst in backend memory as dtype: as they are, or
// rounded to bf16 through tmp (host, n uint16_t).
static void upload_as(model *m, void *dst, const float *src, size_t n, bk_dtype dtype, uint16_t *tmp) {
    if (dtype == BK_DT_F32) {
        m->bk->upload(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) tmp[i] = num_f32_to_bf16(src[i]);
    m->bk->upload(dst, tmp, n * sizeof(uint16_t));
}

// The largest A or B of a, in elements (the bf16 conversion's scratch).
static size_t largest_module(const lora_adapter *a) {
    size_t big = 1;
    for (int i = 0; i < a->n_layers * MODEL_LIN_COUNT; i++) {
        const lora_module *lm = &a->modules[i];
        size_t na = (size_t)lm->rank * lm->in, nb = (size_t)lm->out * lm->rank;
        if (na > big) big = na;
        if (nb > big) big = nb;
    }
    return big;
}

int model_adapter_set(model *m, int slot, const lora_adapter *a, err_t *err) {
    if (slot < 0 || slot >= m->opts.max_slots)
        return err_set(err, "adapter slot %d out of range [0, %d)", slot, m->opts.max_slots);
    if (check_adapter(m, a, err) < 0) return -1;
    int n = a->n_layers * MODEL_LIN_COUNT;
    bk_dtype dt = m->opts.lora_dtype;
    size_t esize = (size_t)bk_dtype_bytes(dt);
    model_slot s = {.used = 1, .max_rank = a->max_rank, .dtype = dt};
    s.mods = calloc((size_t)n, sizeof *s.mods);
    s.mem = m->bk->alloc((size_t)(a->n_params > 0 ? a->n_params : 1) * esize, err);
    uint16_t *tmp = dt == BK_DT_BF16 ? malloc(largest_module(a) * sizeof *tmp) : NULL;
    if (!s.mods || !s.mem || (dt == BK_DT_BF16 && !tmp)) {
        free(s.mods);
        free(tmp);
        if (s.mem) m->bk->free(s.mem);
        return err_set(err, "adapter %s: out of memory for %lld weights", a->name, (long long)a->n_params);
    }
    char *p = s.mem;
    for (int i = 0; i < n; i++) {
        const lora_module *lm = &a->modules[i];
        if (lm->rank == 0) continue;
        size_t na = (size_t)lm->rank * lm->in, nb = (size_t)lm->out * lm->rank;
        upload_as(m, p, lm->A, na, dt, tmp);
        upload_as(m, p + na * esize, lm->B, nb, dt, tmp);
        s.mods[i] = (slot_module){lm->rank, lm->scale, p, p + na * esize};
        p += (na + nb) * esize;
    }
    free(tmp);
    model_adapter_clear(m, slot);
    m->slots[slot] = s;
    return 0;
}

kv_cache *model_kv_new(const model *m, int block_size, int n_blocks, int max_seqs, int max_seq_len,
                       err_t *err) {
    kv_opts o = {m->cfg.num_hidden_layers, m->cfg.num_key_value_heads, m->cfg.head_dim, block_size,
                 n_blocks, max_seqs, max_seq_len, m->opts.kv_dtype};
    return kv_new(m->bk, &o, err);
}

int64_t model_kv_bytes_per_token(const model *m) {
    return kv_bytes_per_token(m->cfg.num_hidden_layers, m->cfg.num_key_value_heads, m->cfg.head_dim,
                              m->opts.kv_dtype);
}

// ---- the forward pass --------------------------------------------------------------

// Points the step's metadata arrays, on the backend (a.meta) and in the
// host staging buffer (h_meta), at T tokens' layout (backend.h, "a forward
// step's metadata"): tok, pos, seq, slot, rows, bk_step_stride(T) apart.
static void step_layout(model *m, int T) {
    int S = bk_step_stride(T);
    int32_t *d = m->a.meta;
    m->a.tok = d, m->a.pos = d + S, m->a.seq = d + 2 * S, m->a.slot = d + 3 * S, m->a.rows = d + 4 * S;
    m->h_slot = m->h_meta + 3 * S;
    m->h_rows = m->h_meta + 4 * S;
}

// Packs the batch's token ids, positions and sequence ids into the staging
// buffer beside the slots and rows prepare_batch wrote there, and hands the
// step's metadata to the backend in one upload of (4S + n_want) int32s.
static void upload_step(model *m, const model_batch *b, int n_want) {
    int T = b->n, S = bk_step_stride(T);
    size_t ib = (size_t)T * sizeof(int32_t);
    memcpy(m->h_meta, b->token, ib);
    memcpy(m->h_meta + S, b->pos, ib);
    memcpy(m->h_meta + 2 * S, b->seq, ib);
    m->bk->upload(m->a.meta, m->h_meta, (size_t)(4 * S + n_want) * sizeof(int32_t));
}

// Checks every token of b and fills the host metadata: slot mapping, wanted
// rows (into the staging buffer), adapter runs. Returns the number of
// wanted tokens, or -1 + err.
static int prepare_batch(model *m, const kv_cache *kv, const model_batch *b, int *n_runs, err_t *err) {
    const model_config *c = &m->cfg;
    if (b->n < 1 || b->n > m->max_tokens)
        return err_set(err, "batch of %d tokens: expected 1 .. %d (model_reserve)", b->n, m->max_tokens);
    step_layout(m, b->n);
    if (kv->o.n_layers != c->num_hidden_layers || kv->o.n_kv_heads != c->num_key_value_heads ||
        kv->o.head_dim != c->head_dim)
        return err_set(err, "kv cache shape (%d layers, %d kv heads, head_dim %d) does not fit the model", kv->o.n_layers,
                       kv->o.n_kv_heads, kv->o.head_dim);
    int n_want = 0, nr = 0;
    for (int t = 0; t < b->n; t++) {
        int32_t id = b->token[t], s = b->seq[t], p = b->pos[t], a = b->adapter ? b->adapter[t] : -1;
        if (id < 0 || id >= c->vocab_size)
            return err_set(err, "batch token %d: id %d out of range [0, %d)", t, id, c->vocab_size);
        if (s < 0 || s >= kv->o.max_seqs || !kv->open[s])
            return err_set(err, "batch token %d: sequence %d is not open", t, s);
        if (p < 0 || p >= kv_seq_capacity(kv, s))
            return err_set(err, "batch token %d: position %d outside sequence %d's reserved %lld", t, p, s,
                           (long long)kv_seq_capacity(kv, s));
        if (a != -1 && !model_adapter_used(m, a))
            return err_set(err, "batch token %d: adapter slot %d is empty", t, a);
        m->h_slot[t] = (int32_t)kv_slot(kv, s, p);
        if (!b->want || b->want[t]) m->h_rows[n_want++] = t;
        if (a < 0) continue;
        if (nr > 0 && m->runs[nr - 1].slot == a && m->runs[nr - 1].start + m->runs[nr - 1].count == t)
            m->runs[nr - 1].count++;
        else
            m->runs[nr++] = (slot_run){t, 1, a};
    }
    *n_runs = nr;
    return n_want;
}

// out (T, OC) = in (T, IC) W^T + bias, then + LoRA of every adapter run
// that adapts this projection.
static void linear_forward(model *m, float *out, const float *in, int layer, model_linear lin, int T,
                           int n_runs) {
    const model_layer *L = &m->layers[layer];
    const bk_weight *W = &L->lin[lin];
    m->bk->matmul(out, in, W, L->bias[lin], T);
    int ns = 0;
    for (int r = 0; r < n_runs; r++) {
        const slot_module *sm = &m->slots[m->runs[r].slot].mods[layer * MODEL_LIN_COUNT + lin];
        if (sm->rank == 0) continue;
        m->segs[ns++] = (bk_lora_seg){m->runs[r].start, m->runs[r].count, sm->rank, sm->scale, sm->A, sm->B,
                                      m->slots[m->runs[r].slot].dtype};
    }
    if (ns) m->bk->lora(out, in, m->lora_v, (int)W->cols, (int)W->rows, m->segs, ns);
}

// x (T, C) += o_proj(attention(rope(q), rope(k), v)) of rmsnorm(x)
static void attention_forward(model *m, kv_cache *kv, int l, int T, int n_runs) {
    const model_config *c = &m->cfg;
    const model_layer *L = &m->layers[l];
    const bk_ops *bk = m->bk;
    model_acts *a = &m->a;
    int C = c->hidden_size, H = c->num_attention_heads, KVH = c->num_key_value_heads, D = c->head_dim;
    float eps = (float)c->rms_norm_eps;

    bk->rmsnorm(a->xn, a->x, L->attn_norm, T, C, eps);            // xn (T, C)
    linear_forward(m, a->q, a->xn, l, MODEL_LIN_Q, T, n_runs);     // q (T, H, D)
    linear_forward(m, a->k, a->xn, l, MODEL_LIN_K, T, n_runs);     // k (T, KVH, D)
    linear_forward(m, a->v, a->xn, l, MODEL_LIN_V, T, n_runs);     // v (T, KVH, D)
    if (c->qk_norm) {                                              // Qwen3: per-head RMSNorm
        bk->rmsnorm(a->q, a->q, L->q_norm, (int64_t)T * H, D, eps);
        bk->rmsnorm(a->k, a->k, L->k_norm, (int64_t)T * KVH, D, eps);
    }
    bk->rope(a->q, a->pos, T, H, D, m->inv_freq);
    bk->rope(a->k, a->pos, T, KVH, D, m->inv_freq);
    bk->kv_store(kv->k[l], kv->v[l], a->k, a->v, a->slot, T, KVH * D, kv->o.dtype);
    bk_attn_args args = {
        .k_cache = kv->k[l], .v_cache = kv->v[l],
        .block_table = kv->table_bk, .table_stride = kv->max_blocks_per_seq, .block_size = kv->o.block_size,
        .seq = a->seq, .pos = a->pos,
        .n_heads = H, .n_kv_heads = KVH, .head_dim = D,
        .window = c->sliding_window,
        .scale = 1.0f / sqrtf((float)D),
        .kv_dtype = kv->o.dtype,
    };
    bk->attention(a->att, a->q, T, &args);                         // att (T, H, D)
    linear_forward(m, a->ao, a->att, l, MODEL_LIN_O, T, n_runs);   // ao (T, C)
    bk->residual(a->x, a->ao, (int64_t)T * C);
}

// x (T, C) += down(silu(gate(xn)) * up(xn)), xn = rmsnorm(x)
static void mlp_forward(model *m, int l, int T, int n_runs) {
    const model_config *c = &m->cfg;
    const model_layer *L = &m->layers[l];
    model_acts *a = &m->a;
    int C = c->hidden_size, I = c->intermediate_size;

    m->bk->rmsnorm(a->xn, a->x, L->mlp_norm, T, C, (float)c->rms_norm_eps);
    linear_forward(m, a->gate, a->xn, l, MODEL_LIN_GATE, T, n_runs); // gate (T, I)
    linear_forward(m, a->up, a->xn, l, MODEL_LIN_UP, T, n_runs);     // up (T, I)
    m->bk->swiglu(a->gate, a->gate, a->up, (int64_t)T * I);
    linear_forward(m, a->ao, a->gate, l, MODEL_LIN_DOWN, T, n_runs); // ao (T, C)
    m->bk->residual(a->x, a->ao, (int64_t)T * C);
}

int model_reserve_logits(model *m, int rows, err_t *err) {
    if (rows < 1) return err_set(err, "model_reserve_logits: rows %d must be >= 1", rows);
    if (!m->bk->host_memory) { // a.logits holds max_tokens rows already
        m->logits_rows = rows;
        return 0;
    }
    float *p = m->bk->alloc((size_t)rows * (size_t)m->cfg.vocab_size * sizeof(float), err);
    if (!p) return -1;
    if (m->host_logits) m->bk->free(m->host_logits);
    m->host_logits = p;
    m->logits_rows = rows;
    return 0;
}

float *model_logits(model *m) { return m->bk->host_memory ? m->host_logits : m->a.logits; }

// logits (N, V) = lm_head(rmsnorm(x[rows])), into `logits` (host) or, when
// NULL, left in backend memory (model_logits).
static void logits_forward(model *m, int N, float *logits) {
    const model_config *c = &m->cfg;
    model_acts *a = &m->a;
    m->bk->gather_rows(a->xn, a->x, a->rows, N, c->hidden_size);
    m->bk->rmsnorm(a->xn, a->xn, m->norm, N, c->hidden_size, (float)c->rms_norm_eps);
    if (m->bk->host_memory) {
        m->bk->matmul(logits ? logits : m->host_logits, a->xn, &m->lm_head, NULL, N);
    } else {
        m->bk->matmul(a->logits, a->xn, &m->lm_head, NULL, N);
        if (logits) m->bk->download(logits, a->logits, (size_t)N * (size_t)c->vocab_size * sizeof(float));
    }
}

// The decoder layers over a prepared batch of T tokens: x (T, C) holds the
// last layer's output (before the final norm) afterwards.
static void layers_forward(model *m, kv_cache *kv, const model_batch *b, int n_want, int n_runs) {
    int T = b->n;
    model_acts *a = &m->a;
    upload_step(m, b, n_want); // the one upload of the step's metadata
    kv_sync_table(kv);         // block table rows that changed, if any

    m->bk->embed(a->x, a->tok, T, &m->embed); // x (T, C)
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        attention_forward(m, kv, l, T, n_runs);
        mlp_forward(m, l, T, n_runs);
    }
}

static void kv_advance(kv_cache *kv, const model_batch *b) {
    for (int t = 0; t < b->n; t++)
        if (kv->len[b->seq[t]] < b->pos[t] + 1) kv->len[b->seq[t]] = b->pos[t] + 1;
}

int model_forward(model *m, kv_cache *kv, const model_batch *b, float *logits, err_t *err) {
    int n_runs = 0;
    int n_want = prepare_batch(m, kv, b, &n_runs, err);
    if (n_want < 0) return -1;
    if (!logits && n_want > (m->bk->host_memory ? m->logits_rows : m->max_tokens))
        return err_set(err, "model_forward: %d rows of logits wanted, model_reserve_logits reserved %d", n_want,
                       m->logits_rows);
    layers_forward(m, kv, b, n_want, n_runs);
    if (n_want > 0) logits_forward(m, n_want, logits);
    kv_advance(kv, b);
    return 0;
}

// The same layers; the wanted rows of x go through the final norm (as
// logits_forward does) and are downloaded instead of meeting lm_head. Every
// backend has gather_rows, rmsnorm and download, so this needs no kernel of
// its own on cuda.
int model_forward_hidden(model *m, kv_cache *kv, const model_batch *b, float *hidden, err_t *err) {
    int n_runs = 0;
    int n_want = prepare_batch(m, kv, b, &n_runs, err);
    if (n_want < 0) return -1;
    if (!hidden) return err_set(err, "model_forward_hidden: hidden must not be NULL");
    const model_config *c = &m->cfg;
    model_acts *a = &m->a;
    layers_forward(m, kv, b, n_want, n_runs);
    if (n_want > 0) {
        m->bk->gather_rows(a->xn, a->x, a->rows, n_want, c->hidden_size);
        m->bk->rmsnorm(a->xn, a->xn, m->norm, n_want, c->hidden_size, (float)c->rms_norm_eps);
        m->bk->download(hidden, a->xn, (size_t)n_want * (size_t)c->hidden_size * sizeof(float));
    }
    kv_advance(kv, b);
    return 0;
}

// ---- views for training ------------------------------------------------------------

void model_get_view(const model *m, model_view *v) {
    *v = (model_view){m->bk, &m->embed, &m->lm_head, m->norm, m->inv_freq};
}

void model_get_layer_view(const model *m, int layer, model_layer_view *v) {
    const model_layer *L = &m->layers[layer];
    memset(v, 0, sizeof *v);
    v->attn_norm = L->attn_norm;
    v->mlp_norm = L->mlp_norm;
    v->q_norm = L->q_norm;
    v->k_norm = L->k_norm;
    for (int i = 0; i < MODEL_LIN_COUNT; i++) {
        v->lin[i] = &L->lin[i];
        v->bias[i] = L->bias[i];
    }
}
