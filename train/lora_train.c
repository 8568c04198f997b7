#include "lora_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "util.h"

#define CE_ROWS 128 // logit rows per chunk of the loss head

// What one layer's forward keeps for its backward. Shapes with N tokens.
typedef struct lt_layer_acts {
    float *x;             // (N, C) the layer's input (the residual stream)
    float *xn1;           // (N, C) input_layernorm(x): the input of q, k, v
    float *qn, *kn;       // (N, H*D), (N, KVH*D) q, k before the q/k norm (Qwen3; else NULL)
    float *q, *k, *v;     // (N, H*D), (N, KVH*D) q, k after norm and RoPE; v
    float *att, *lse;     // (N, H*D) attention output (o_proj's input); (N, H) its log-sum-exp
    float *x2;            // (N, C) x + o_proj(att)
    float *xn2;           // (N, C) post_attention_layernorm(x2): the input of gate, up
    float *gate, *up, *h; // (N, I) gate_proj, up_proj, silu(gate) * up (down_proj's input)
    float *lv[MODEL_LIN_COUNT]; // (N, rank) A drop(input) of each adapted projection
} lt_layer_acts;

struct lt_model {
    model *m;
    model_config cfg;
    model_view w;
    model_layer_view *lw; // per layer
    const bk_ops *bk;
    lt_opts o;

    lt_module *mods; // L * MODEL_LIN_COUNT
    int max_rank;
    int64_t n_params;
    float *params, *grads; // carved from pmem
    void *pmem;

    // Activations and scratch for N tokens, carved from amem.
    int N;
    lt_layer_acts *la;        // per layer
    float *x_final;           // (N, C) the last layer's output
    float *xf, *xnf, *dxnf;   // (N, C) target rows: x_final, normed, gradient
    float *logits, *row_loss; // (ce_rows, V), (ce_rows)
    float *dx, *dxn;          // (N, C) gradient of the residual stream; of a normed input
    float *dq, *datt;         // (N, H*D)
    float *dk, *dv;           // (N, KVH*D)
    float *dh, *dup;          // (N, I)
    float *u;                 // (N, max_rank) LoRA backward scratch
    float *delta;             // (N, H) attention backward scratch
    int32_t *tok, *pos, *start, *rows, *tgt; // (N) the batch; target rows and their ids
    int32_t *scat;            // (N) token t's row of dxnf, or n_rows (a zero row) if t is no target
    void *amem;
    // Host memory: the batch as setup() builds it before the upload, the
    // loss of a chunk of rows after the download, a staging copy of the
    // parameters (init and writing go through it on every backend, so the
    // CPU tests run the device path), and zeros to upload (device only).
    int32_t *h_ints;          // (6, N): tok, pos, start, rows, tgt, scat in that order
    float *h_loss;            // (ce_rows)
    float *h_params;          // (n_params)
    float *zeros;             // (max(n_params, hidden)) or NULL on a host-memory backend
    int n_rows;               // target rows of the current batch
    int ce_rows;              // logit rows per chunk: min(CE_ROWS, N)
    int64_t act_bytes;        // size of amem
};

// ---- construction -------------------------------------------------------------------

static const lt_module *mod(const lt_model *t, int l, model_linear lin) {
    return &t->mods[l * MODEL_LIN_COUNT + lin];
}

const lt_module *lt_module_at(const lt_model *t, int layer, model_linear l) { return mod(t, layer, l); }
int64_t lt_n_params(const lt_model *t) { return t->n_params; }
int64_t lt_activation_bytes(const lt_model *t) { return t->act_bytes; }
float *lt_params(lt_model *t) { return t->params; }
float *lt_grads(lt_model *t) { return t->grads; }

// Zeroes n floats of backend memory: memset on the host, else an upload
// from the zero buffer (backend.h has no fill op; this runs once a step).
static void zero_floats(lt_model *t, float *p, int64_t n) {
    if (t->bk->host_memory) memset(p, 0, (size_t)n * sizeof(float));
    else t->bk->upload(p, t->zeros, (size_t)n * sizeof(float));
}

void lt_zero_grads(lt_model *t) { zero_floats(t, t->grads, t->n_params); }

void lt_get_params(lt_model *t, float *host) {
    t->bk->download(host, t->params, (size_t)t->n_params * sizeof(float));
}

void lt_set_params(lt_model *t, const float *host) {
    t->bk->upload(t->params, host, (size_t)t->n_params * sizeof(float));
}

// Hands out 64-byte aligned pieces of one allocation; with base NULL it
// only measures.
typedef struct carver {
    char *base;
    size_t off;
} carver;

static void *take(carver *c, int64_t n, size_t elem) {
    void *p = c->base ? c->base + c->off : NULL;
    c->off += ((size_t)n * elem + 63) / 64 * 64;
    return p;
}

static float *takef(carver *c, int64_t n) { return take(c, n, sizeof(float)); }

// Points every activation at its place in c (sizes for t->N tokens). With
// recompute, layers share one set of buffers except their inputs x.
static void layout(lt_model *t, carver *c) {
    const model_config *g = &t->cfg;
    int64_t N = t->N, C = g->hidden_size, QD = (int64_t)g->num_attention_heads * g->head_dim;
    int64_t KVD = (int64_t)g->num_key_value_heads * g->head_dim, I = g->intermediate_size;
    int L = g->num_hidden_layers;
    for (int l = 0; l < L; l++) {
        lt_layer_acts *a = &t->la[l];
        a->x = takef(c, N * C);
        if (t->o.recompute && l > 0) {
            float *x = a->x;
            *a = t->la[0];
            a->x = x;
            continue;
        }
        a->xn1 = takef(c, N * C);
        a->qn = g->qk_norm ? takef(c, N * QD) : NULL;
        a->kn = g->qk_norm ? takef(c, N * KVD) : NULL;
        a->q = takef(c, N * QD);
        a->k = takef(c, N * KVD);
        a->v = takef(c, N * KVD);
        a->att = takef(c, N * QD);
        a->lse = takef(c, N * g->num_attention_heads);
        a->x2 = takef(c, N * C);
        a->xn2 = takef(c, N * C);
        a->gate = takef(c, N * I);
        a->up = takef(c, N * I);
        a->h = takef(c, N * I);
        for (int i = 0; i < MODEL_LIN_COUNT; i++) {
            int r = mod(t, l, (model_linear)i)->rank;
            if (t->o.recompute) // shared by every layer: the largest rank of any
                for (int k = 1; k < L; k++)
                    if (mod(t, k, (model_linear)i)->rank > r) r = mod(t, k, (model_linear)i)->rank;
            a->lv[i] = r ? takef(c, N * r) : NULL;
        }
    }
    t->x_final = takef(c, N * C);
    t->xf = takef(c, N * C);
    t->xnf = takef(c, N * C);
    t->dxnf = takef(c, N * C);
    t->ce_rows = t->N < CE_ROWS ? t->N : CE_ROWS;
    t->logits = takef(c, (int64_t)t->ce_rows * g->vocab_size);
    t->row_loss = takef(c, t->ce_rows);
    t->dx = takef(c, N * C);
    t->dxn = takef(c, N * C);
    t->dq = takef(c, N * QD);
    t->datt = takef(c, N * QD);
    t->dk = takef(c, N * KVD);
    t->dv = takef(c, N * KVD);
    t->dh = takef(c, N * I);
    t->dup = takef(c, N * I);
    t->u = takef(c, N * (t->max_rank > 0 ? t->max_rank : 1));
    t->delta = takef(c, N * g->num_attention_heads);
    int32_t **ints[] = {&t->tok, &t->pos, &t->start, &t->rows, &t->tgt, &t->scat};
    for (int i = 0; i < 6; i++) *ints[i] = take(c, N, sizeof(int32_t));
}

// Allocates parameters, gradients and activations once the modules are set.
static int alloc_all(lt_model *t, err_t *err) {
    t->n_params = 0;
    t->max_rank = 0;
    for (int i = 0; i < t->cfg.num_hidden_layers * MODEL_LIN_COUNT; i++) {
        lt_module *md = &t->mods[i];
        if (!md->rank) continue;
        md->a_off = t->n_params;
        md->b_off = md->a_off + (int64_t)md->rank * md->in;
        t->n_params = md->b_off + (int64_t)md->out * md->rank;
        if (md->rank > t->max_rank) t->max_rank = md->rank;
    }
    if (t->n_params == 0) return err_set(err, "lora_train: no projection is adapted");
    size_t pbytes = ((size_t)t->n_params * sizeof(float) + 63) / 64 * 64;
    int64_t nz = t->n_params > t->cfg.hidden_size ? t->n_params : t->cfg.hidden_size;
    t->h_params = malloc((size_t)t->n_params * sizeof(float));
    if (!t->bk->host_memory) t->zeros = calloc((size_t)nz, sizeof(float));
    if (!t->h_params || (!t->bk->host_memory && !t->zeros)) return err_set(err, "lora_train: out of memory");
    if (!(t->pmem = t->bk->alloc(2 * pbytes, err))) return err_wrap(err, "lora_train: %lld LoRA parameters",
                                                                       (long long)t->n_params);
    t->params = t->pmem;
    t->grads = (float *)((char *)t->pmem + pbytes);
    zero_floats(t, t->params, t->n_params);
    zero_floats(t, t->grads, t->n_params);
    carver c = {NULL, 0};
    layout(t, &c);
    t->h_ints = malloc((size_t)6 * (size_t)t->N * sizeof(int32_t));
    t->h_loss = malloc((size_t)t->ce_rows * sizeof(float));
    if (!t->h_ints || !t->h_loss) return err_set(err, "lora_train: out of memory");
    t->act_bytes = (int64_t)c.off;
    if (!(t->amem = t->bk->alloc(c.off, err)))
        return err_wrap(err, "lora_train: activations for %d tokens (%.1f MiB)", t->N, (double)c.off / (1 << 20));
    c = (carver){t->amem, 0};
    layout(t, &c);
    return 0;
}

static lt_model *create(model *m, const lt_opts *o, err_t *err) {
    lt_model *t = calloc(1, sizeof *t);
    if (!t) {
        err_set(err, "out of memory");
        return NULL;
    }
    t->m = m;
    t->cfg = *model_get_config(m);
    model_get_view(m, &t->w);
    t->bk = t->w.bk;
    t->o = *o;
    t->N = o->max_tokens;
    int L = t->cfg.num_hidden_layers;
    t->lw = calloc((size_t)L, sizeof *t->lw);
    t->la = calloc((size_t)L, sizeof *t->la);
    t->mods = calloc((size_t)L * MODEL_LIN_COUNT, sizeof *t->mods);
    if (!t->lw || !t->la || !t->mods) {
        err_set(err, "out of memory");
        lt_free(t);
        return NULL;
    }
    for (int l = 0; l < L; l++) model_get_layer_view(m, l, &t->lw[l]);
    const bk_ops *b = t->bk;
    if (!b->attention_train || !b->attention_backward || !b->lora_train || !b->lora_backward ||
        !b->matmul_backward || !b->rmsnorm_backward || !b->rope_backward || !b->swiglu_backward ||
        !b->cross_entropy || !b->adamw || !b->sumsq) {
        err_set(err, "lora_train: backend %s cannot train (it lacks the training ops)", b->name);
        lt_free(t);
        return NULL;
    }
    if (t->N < 1) {
        err_set(err, "lora_train: max_tokens %d must be >= 1", t->N);
        lt_free(t);
        return NULL;
    }
    return t;
}

lt_model *lt_new(model *m, const lt_opts *o, err_t *err) {
    lt_model *t = create(m, o, err);
    if (!t) return NULL;
    if (o->rank < 1 || !(o->alpha > 0)) {
        err_set(err, "lora_train: rank %d and alpha %g must be positive", o->rank, o->alpha);
        lt_free(t);
        return NULL;
    }
    float scale = (float)(o->rslora ? o->alpha / sqrt((double)o->rank) : o->alpha / o->rank);
    for (int l = 0; l < t->cfg.num_hidden_layers; l++)
        for (int i = 0; i < MODEL_LIN_COUNT; i++) {
            if (!(o->targets >> i & 1)) continue;
            lt_module *md = &t->mods[l * MODEL_LIN_COUNT + i];
            model_linear_dims(&t->cfg, (model_linear)i, &md->out, &md->in);
            md->rank = o->rank;
            md->scale = scale;
        }
    if (alloc_all(t, err) < 0) {
        lt_free(t);
        return NULL;
    }
    return t;
}

lt_model *lt_from_adapter(model *m, const lora_adapter *a, const lt_opts *o, err_t *err) {
    lt_model *t = create(m, o, err);
    if (!t) return NULL;
    if (a->n_layers != t->cfg.num_hidden_layers) {
        err_set(err, "adapter %s has %d layers, the model %d", a->name, a->n_layers, t->cfg.num_hidden_layers);
        lt_free(t);
        return NULL;
    }
    for (int i = 0; i < a->n_layers * MODEL_LIN_COUNT; i++) {
        const lora_module *lm = &a->modules[i];
        t->mods[i] = (lt_module){.rank = lm->rank, .in = lm->in, .out = lm->out, .scale = lm->scale};
    }
    if (alloc_all(t, err) < 0) {
        lt_free(t);
        return NULL;
    }
    for (int i = 0; i < a->n_layers * MODEL_LIN_COUNT; i++) {
        const lora_module *lm = &a->modules[i];
        if (!lm->rank) continue;
        t->bk->upload(t->params + t->mods[i].a_off, lm->A, (size_t)lm->rank * lm->in * sizeof(float));
        t->bk->upload(t->params + t->mods[i].b_off, lm->B, (size_t)lm->out * lm->rank * sizeof(float));
    }
    return t;
}

void lt_free(lt_model *t) {
    if (!t) return;
    if (t->pmem) t->bk->free(t->pmem);
    if (t->amem) t->bk->free(t->amem);
    free(t->lw);
    free(t->la);
    free(t->mods);
    free(t->h_ints);
    free(t->h_loss);
    free(t->h_params);
    free(t->zeros);
    free(t);
}

// Drawn into the host staging copy, then uploaded.
void lt_init_peft(lt_model *t, uint64_t seed) {
    util_rng rng;
    util_rng_seed(&rng, seed);
    float *P = t->h_params;
    for (int i = 0; i < t->cfg.num_hidden_layers * MODEL_LIN_COUNT; i++) {
        const lt_module *md = &t->mods[i];
        if (!md->rank) continue;
        double bound = 1.0 / sqrt((double)md->in);
        float *A = P + md->a_off;
        for (int64_t k = 0; k < (int64_t)md->rank * md->in; k++)
            A[k] = (float)((2.0 * util_rng_uniform(&rng) - 1.0) * bound);
        memset(P + md->b_off, 0, (size_t)md->out * md->rank * sizeof(float));
    }
    lt_set_params(t, P);
}

// ---- the batch -----------------------------------------------------------------------

int64_t lt_count_targets(const lt_seq *seqs, int n) {
    int64_t k = 0;
    for (int s = 0; s < n; s++)
        for (int i = 1; i < seqs[s].n; i++) k += seqs[s].mask[i] != 0;
    return k;
}

// Packs the sequences into the host batch arrays and uploads them; returns
// the token count or -1. scat maps each token to its row of the head's
// gradient, the rows without a target to row n_rows, which head() zeroes.
static int setup(lt_model *t, const lt_seq *seqs, int n, err_t *err) {
    if (n < 1) return err_set(err, "lora_train: empty batch");
    int64_t N = 0;
    for (int s = 0; s < n; s++) {
        if (seqs[s].n < 1) return err_set(err, "lora_train: batch sequence %d is empty", s);
        N += seqs[s].n;
    }
    if (N > t->N) return err_set(err, "lora_train: batch of %lld tokens: more than max_tokens %d", (long long)N, t->N);
    int32_t *tok = t->h_ints, *pos = tok + t->N, *start = pos + t->N, *rows = start + t->N, *tgt = rows + t->N;
    int32_t *scat = tgt + t->N;
    int base = 0, nr = 0;
    for (int s = 0; s < n; s++) {
        const lt_seq *q = &seqs[s];
        for (int i = 0; i < q->n; i++) {
            if (q->ids[i] < 0 || q->ids[i] >= t->cfg.vocab_size)
                return err_set(err, "lora_train: batch sequence %d token %d: id %d out of range [0, %d)", s, i,
                               q->ids[i], t->cfg.vocab_size);
            tok[base + i] = q->ids[i];
            pos[base + i] = i;
            start[base + i] = base;
            scat[base + i] = -1;
            if (i + 1 < q->n && q->mask[i + 1]) {
                scat[base + i] = nr;
                rows[nr] = base + i;
                tgt[nr++] = q->ids[i + 1];
            }
        }
        base += q->n;
    }
    for (int i = 0; i < (int)N; i++)
        if (scat[i] < 0) scat[i] = nr; // nr < N: the last token of a sequence is never a target row
    t->n_rows = nr;
    const bk_ops *bk = t->bk;
    size_t nb = (size_t)N * sizeof(int32_t), rb = (size_t)nr * sizeof(int32_t);
    bk->upload(t->tok, tok, nb);
    bk->upload(t->pos, pos, nb);
    bk->upload(t->start, start, nb);
    bk->upload(t->scat, scat, nb);
    if (nr) bk->upload(t->rows, rows, rb), bk->upload(t->tgt, tgt, rb);
    return (int)N;
}

// ---- forward ---------------------------------------------------------------------------

// Each projection of each layer draws its own mask, as PEFT's one
// nn.Dropout per LoRA layer does.
static bk_dropout drop_for(float p, uint64_t key, int l, model_linear lin) {
    bk_dropout d = {p, 0};
    if (p > 0) d.key = util_splitmix64(key ^ util_splitmix64((uint64_t)(l * MODEL_LIN_COUNT + lin)));
    return d;
}

static bk_train_attn attn_args(const lt_model *t) {
    const model_config *g = &t->cfg;
    return (bk_train_attn){t->start, g->num_attention_heads, g->num_key_value_heads, g->head_dim,
                           g->sliding_window, 1.0f / sqrtf((float)g->head_dim)};
}

// out (N, OC) = in (N, IC) W^T + bias, + scale * B A drop(in) when adapted.
static void linear_forward(lt_model *t, int l, model_linear lin, float *out, const float *in, int N, float p,
                           uint64_t key) {
    const lt_module *md = mod(t, l, lin);
    t->bk->matmul(out, in, t->lw[l].lin[lin], t->lw[l].bias[lin], N);
    if (!md->rank) return;
    bk_dropout d = drop_for(p, key, l, lin);
    t->bk->lora_train(out, t->la[l].lv[lin], in, t->params + md->a_off, t->params + md->b_off, N, md->in, md->out,
                      md->rank, md->scale, &d);
}

// The layer of core/model.c (attention_forward then mlp_forward), keeping
// its intermediates in t->la[l]; writes the output to the next layer's x.
static void layer_forward(lt_model *t, int l, int N, float p, uint64_t key) {
    const model_config *g = &t->cfg;
    const model_layer_view *w = &t->lw[l];
    const bk_ops *bk = t->bk;
    lt_layer_acts *a = &t->la[l];
    int C = g->hidden_size, H = g->num_attention_heads, KVH = g->num_key_value_heads, D = g->head_dim;
    int64_t I = g->intermediate_size;
    float eps = (float)g->rms_norm_eps;
    float *out = l + 1 < g->num_hidden_layers ? t->la[l + 1].x : t->x_final;
    bk_train_attn args = attn_args(t);

    bk->rmsnorm(a->xn1, a->x, w->attn_norm, N, C, eps);                          // xn1 (N, C)
    linear_forward(t, l, MODEL_LIN_Q, g->qk_norm ? a->qn : a->q, a->xn1, N, p, key); // (N, H, D)
    linear_forward(t, l, MODEL_LIN_K, g->qk_norm ? a->kn : a->k, a->xn1, N, p, key); // (N, KVH, D)
    linear_forward(t, l, MODEL_LIN_V, a->v, a->xn1, N, p, key);                  // (N, KVH, D)
    if (g->qk_norm) {
        bk->rmsnorm(a->q, a->qn, w->q_norm, (int64_t)N * H, D, eps);
        bk->rmsnorm(a->k, a->kn, w->k_norm, (int64_t)N * KVH, D, eps);
    }
    bk->rope(a->q, t->pos, N, H, D, t->w.inv_freq);
    bk->rope(a->k, t->pos, N, KVH, D, t->w.inv_freq);
    bk->attention_train(a->att, a->lse, a->q, a->k, a->v, N, &args);            // att (N, H, D)
    linear_forward(t, l, MODEL_LIN_O, a->x2, a->att, N, p, key);                // x2 (N, C) = x + o(att)
    bk->residual(a->x2, a->x, (int64_t)N * C);

    bk->rmsnorm(a->xn2, a->x2, w->mlp_norm, N, C, eps);                          // xn2 (N, C)
    linear_forward(t, l, MODEL_LIN_GATE, a->gate, a->xn2, N, p, key);           // gate (N, I)
    linear_forward(t, l, MODEL_LIN_UP, a->up, a->xn2, N, p, key);               // up (N, I)
    bk->swiglu(a->h, a->gate, a->up, (int64_t)N * I);                           // h (N, I)
    linear_forward(t, l, MODEL_LIN_DOWN, out, a->h, N, p, key);                 // out (N, C) = x2 + down(h)
    bk->residual(out, a->x2, (int64_t)N * C);
}

// ---- backward ----------------------------------------------------------------------------

// dy (N, OC) -> din (N, IC) = dy W (or +=), plus the LoRA's input gradient
// and dA, dB; in is the forward's input.
static void linear_backward(lt_model *t, int l, model_linear lin, float *din, const float *dy, const float *in,
                            int N, int accumulate, float p, uint64_t key) {
    const lt_module *md = mod(t, l, lin);
    t->bk->matmul_backward(din, dy, t->lw[l].lin[lin], N, accumulate);
    if (!md->rank) return;
    bk_dropout d = drop_for(p, key, l, lin);
    t->bk->lora_backward(din, t->grads + md->a_off, t->grads + md->b_off, t->u, dy, in, t->la[l].lv[lin],
                         t->params + md->a_off, t->params + md->b_off, N, md->in, md->out, md->rank, md->scale, &d);
}

// t->dx (N, C): the gradient wrt the layer's output in, wrt its input out.
static void layer_backward(lt_model *t, int l, int N, float p, uint64_t key) {
    const model_config *g = &t->cfg;
    const model_layer_view *w = &t->lw[l];
    const bk_ops *bk = t->bk;
    lt_layer_acts *a = &t->la[l];
    int C = g->hidden_size, H = g->num_attention_heads, KVH = g->num_key_value_heads, D = g->head_dim;
    int64_t I = g->intermediate_size;
    float eps = (float)g->rms_norm_eps;
    bk_train_attn args = attn_args(t);

    // MLP block: out = x2 + down(silu(gate(xn2)) * up(xn2)), xn2 = norm(x2)
    linear_backward(t, l, MODEL_LIN_DOWN, t->dh, t->dx, a->h, N, 0, p, key);    // dh (N, I)
    bk->swiglu_backward(t->dh, t->dup, t->dh, a->gate, a->up, N * I);           // dgate, dup (N, I)
    linear_backward(t, l, MODEL_LIN_GATE, t->dxn, t->dh, a->xn2, N, 0, p, key); // dxn2 (N, C)
    linear_backward(t, l, MODEL_LIN_UP, t->dxn, t->dup, a->xn2, N, 1, p, key);
    bk->rmsnorm_backward(t->dx, t->dxn, a->x2, w->mlp_norm, N, C, eps, 1);      // dx2 = dout + norm'

    // Attention block: x2 = x + o(attention(rope(qnorm(q(xn1))), rope(knorm(k(xn1))), v(xn1)))
    linear_backward(t, l, MODEL_LIN_O, t->datt, t->dx, a->att, N, 0, p, key);   // datt (N, H, D)
    bk->attention_backward(t->dq, t->dk, t->dv, t->delta, t->datt, a->q, a->k, a->v, a->att, a->lse, N, &args);
    bk->rope_backward(t->dq, t->pos, N, H, D, t->w.inv_freq);
    bk->rope_backward(t->dk, t->pos, N, KVH, D, t->w.inv_freq);
    if (g->qk_norm) {
        bk->rmsnorm_backward(t->dq, t->dq, a->qn, w->q_norm, (int64_t)N * H, D, eps, 0);
        bk->rmsnorm_backward(t->dk, t->dk, a->kn, w->k_norm, (int64_t)N * KVH, D, eps, 0);
    }
    linear_backward(t, l, MODEL_LIN_Q, t->dxn, t->dq, a->xn1, N, 0, p, key);    // dxn1 (N, C)
    linear_backward(t, l, MODEL_LIN_K, t->dxn, t->dk, a->xn1, N, 1, p, key);
    linear_backward(t, l, MODEL_LIN_V, t->dxn, t->dv, a->xn1, N, 1, p, key);
    bk->rmsnorm_backward(t->dx, t->dxn, a->x, w->attn_norm, N, C, eps, 1);      // dx = dx2 + norm'
}

// ---- the loss head ---------------------------------------------------------------------

// logits = lm_head(norm(x_final)) at the target rows, ce_rows at a time;
// returns the sum of their cross-entropies. With backward, leaves in t->dx
// (N, C) the gradient of grad_scale * that sum wrt x_final (zero on rows
// without a target).
static double head(lt_model *t, int N, float grad_scale, int backward) {
    const bk_ops *bk = t->bk;
    int nr = t->n_rows, C = t->cfg.hidden_size, V = t->cfg.vocab_size;
    float eps = (float)t->cfg.rms_norm_eps;
    bk->gather_rows(t->xf, t->x_final, t->rows, nr, C);
    bk->rmsnorm(t->xnf, t->xf, t->w.norm, nr, C, eps);
    double loss = 0.0;
    for (int r0 = 0; r0 < nr; r0 += t->ce_rows) {
        int R = nr - r0 < t->ce_rows ? nr - r0 : t->ce_rows;
        bk->matmul(t->logits, t->xnf + (int64_t)r0 * C, t->w.lm_head, NULL, R); // (R, V)
        bk->cross_entropy(t->logits, t->row_loss, t->tgt + r0, R, V, grad_scale);
        bk->download(t->h_loss, t->row_loss, (size_t)R * sizeof(float));
        for (int i = 0; i < R; i++) loss += t->h_loss[i];
        if (backward) bk->matmul_backward(t->dxnf + (int64_t)r0 * C, t->logits, t->w.lm_head, R, 0);
    }
    if (!backward) return loss;
    bk->rmsnorm_backward(t->dxnf, t->dxnf, t->xf, t->w.norm, nr, C, eps, 0);
    // dx[t] = dxnf[scat[t]]: the target rows' gradients, zero elsewhere.
    zero_floats(t, t->dxnf + (int64_t)nr * C, C);
    bk->gather_rows(t->dx, t->dxnf, t->scat, N, C);
    return loss;
}

static void forward(lt_model *t, int N, float p, uint64_t key) {
    t->bk->embed(t->la[0].x, t->tok, N, t->w.embed); // x (N, C)
    for (int l = 0; l < t->cfg.num_hidden_layers; l++) layer_forward(t, l, N, p, key);
}

int lt_forward_backward(lt_model *t, const lt_seq *seqs, int n, float grad_scale, uint64_t dropout_key,
                        double *loss_sum, err_t *err) {
    int N = setup(t, seqs, n, err);
    if (N < 0) return -1;
    *loss_sum = 0.0;
    if (t->n_rows == 0) return 0;
    float p = t->o.dropout;
    forward(t, N, p, dropout_key);
    *loss_sum = head(t, N, grad_scale, 1);
    int L = t->cfg.num_hidden_layers;
    for (int l = L - 1; l >= 0; l--) {
        // With recompute the shared buffers still hold the last layer's.
        if (t->o.recompute && l < L - 1) layer_forward(t, l, N, p, dropout_key);
        layer_backward(t, l, N, p, dropout_key);
    }
    return 0;
}

int lt_forward_loss(lt_model *t, const lt_seq *seqs, int n, double *loss_sum, err_t *err) {
    int N = setup(t, seqs, n, err);
    if (N < 0) return -1;
    *loss_sum = 0.0;
    if (t->n_rows == 0) return 0;
    forward(t, N, 0.0f, 0);
    *loss_sum = head(t, N, 0.0f, 0);
    return 0;
}

// ---- writing the adapter -------------------------------------------------------------------

void lt_peft_key(int layer, model_linear l, int is_b, char *buf, size_t n) {
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.lora_%c.weight", layer, model_linear_path(l),
             is_b ? 'B' : 'A');
}

int lt_write_peft(lt_model *t, const lora_config *lc, const char *dir, err_t *err) {
    const float *P = t->h_params; // the parameters, downloaded
    lt_get_params(t, t->h_params);
    char *wpath = util_path_join(dir, "adapter_model.safetensors");
    char *cpath = util_path_join(dir, "adapter_config.json");
    char *json = lora_config_to_json(lc);
    sft_writer *w = sft_writer_new();
    int rc = -1;
    if (!wpath || !cpath || !json || !w) {
        err_set(err, "%s: out of memory", dir);
        goto done;
    }
    for (int l = 0; l < t->cfg.num_hidden_layers; l++)
        for (int i = 0; i < MODEL_LIN_COUNT; i++) {
            const lt_module *md = mod(t, l, (model_linear)i);
            if (!md->rank) continue;
            char key[160];
            int64_t sa[2] = {md->rank, md->in}, sb[2] = {md->out, md->rank};
            lt_peft_key(l, (model_linear)i, 0, key, sizeof key);
            if (sft_writer_add(w, key, SFT_F32, 2, sa, P + md->a_off, err) < 0) goto done;
            lt_peft_key(l, (model_linear)i, 1, key, sizeof key);
            if (sft_writer_add(w, key, SFT_F32, 2, sb, P + md->b_off, err) < 0) goto done;
        }
    if (sft_writer_metadata(w, "format", "pt", err) < 0 || sft_writer_write(w, wpath, err) < 0 ||
        util_write_file_atomic(cpath, json, strlen(json), err) < 0) {
        err_wrap(err, "%s", dir);
        goto done;
    }
    rc = 0;
done:
    sft_writer_free(w);
    free(json);
    free(cpath);
    free(wpath);
    return rc;
}
