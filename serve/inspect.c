// inspect: read a model folder (and adapters) exactly as the server will,
// and print what was found. A person's first look at a model, and the
// README's first command until the HTTP server exists.
#include "inspect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "chat.h"
#include "config.h"
#include "kv.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "util.h"
#ifdef TESSERA_CUDA
#include "cuda/cu_device.h"
#endif

static void print_config(const model_config *c) {
    printf("model: %s, %d layers, hidden %d, intermediate %d, vocab %d\n", model_arch_name(c->arch),
           c->num_hidden_layers, c->hidden_size, c->intermediate_size, c->vocab_size);
    printf("  attention: %d heads, %d kv heads, head_dim %d%s%s%s\n", c->num_attention_heads,
           c->num_key_value_heads, c->head_dim, c->qkv_bias ? ", q/k/v bias" : "", c->o_bias ? ", o bias" : "",
           c->qk_norm ? ", q/k norm" : "");
    static const char *rope_names[] = {"default", "linear", "llama3"};
    printf("  rope: %s, theta %g", rope_names[c->rope.type], c->rope.theta);
    if (c->rope.type != MODEL_ROPE_DEFAULT) printf(", factor %g", c->rope.factor);
    if (c->rope.type == MODEL_ROPE_LLAMA3)
        printf(", low %g, high %g, original %lld", c->rope.low_freq_factor, c->rope.high_freq_factor,
               (long long)c->rope.original_max_position_embeddings);
    printf("; max positions %lld; rms_norm_eps %g\n", (long long)c->max_position_embeddings, c->rms_norm_eps);
    printf("  embeddings %s; bos %d; eos", c->tie_word_embeddings ? "tied" : "untied", c->bos_token_id);
    for (int i = 0; i < c->n_eos; i++) printf(" %d", c->eos_token_ids[i]);
    printf("; dtype %s%s\n", c->dtype[0] ? c->dtype : "?", c->quant == MODEL_QUANT_BNB_NF4 ? " (bnb nf4)" : "");
}

static int print_weights(const char *dir, const model_config *c, err_t *err) {
    sft *s = sft_open(dir, err);
    if (!s) return -1;
    size_t bytes[SFT_NDTYPES] = {0};
    int counts[SFT_NDTYPES] = {0};
    for (int i = 0; i < sft_count(s); i++) {
        const sft_tensor *t = sft_at(s, i);
        bytes[t->dtype] += t->nbytes;
        counts[t->dtype]++;
    }
    printf("weights: %d tensors:", sft_count(s));
    for (int d = 0; d < SFT_NDTYPES; d++)
        if (counts[d]) printf(" %d %s (%.2f MiB)", counts[d], sft_dtype_name(d), (double)bytes[d] / (1 << 20));
    printf("\n");
    int rc = model_config_check_weights(c, s, err);
    if (rc == 0) printf("  every tensor the config implies is present with the right shape\n");
    sft_close(s);
    return rc;
}

static void print_ids(const int32_t *ids, size_t n) {
    printf("  ids (%zu):", n);
    for (size_t i = 0; i < n && i < 64; i++) printf(" %d", ids[i]);
    printf("%s\n", n > 64 ? " ..." : "");
}

static int print_prompt(const char *dir, const tok *t, const char *prompt, const char *template_name, err_t *err) {
    char *cfg_path = util_path_join(dir, "tokenizer_config.json");
    chat_family fam;
    char *bos = NULL;
    int rc = template_name ? chat_family_parse(template_name, &fam, err)
                           : chat_from_config(cfg_path, &fam, &bos, err);
    free(cfg_path);
    if (rc != 0) return -1;
    printf("chat template: %s%s\n", chat_family_name(fam), template_name ? " (by name)" : " (detected)");
    chat_msg msgs[2] = {{"system", "You are a helpful assistant.", NULL}, {"user", prompt, NULL}};
    chat_opts opts = {.add_generation_prompt = 1, .enable_thinking = -1, .bos_token = bos};
    chat_prompt *p = chat_render_segments(fam, msgs, 2, &opts, err);
    free(bos);
    if (!p) return -1;
    const char *text = p->text;
    printf("prompt, rendered:\n%s\n", text);
    size_t n = 0;
    int32_t *ids = chat_encode(t, p, &n, NULL, err); // as the server tokenizes it
    if (!ids) {
        chat_prompt_free(p);
        return -1;
    }
    print_ids(ids, n);
    size_t len = 0;
    char *back = tok_decode(t, ids, n, 0, &len);
    printf("  decode(encode(prompt)) %s the prompt\n", back && strcmp(back, text) == 0 ? "==" : "!=");
    free(back);
    free(ids);
    chat_prompt_free(p);
    return 0;
}

static int print_adapter(const char *path, const model_config *c, err_t *err) {
    lora_adapter *a = lora_load(path, c, err);
    if (!a) return -1;
    printf("adapter %s:\n", path);
    lora_describe(a, stdout);
    lora_free(a);
    return 0;
}

int inspect_run(const inspect_opts *o, err_t *err) {
    model_config c;
    if (model_config_load(o->model, &c, err) != 0) return -1;
    print_config(&c);
    if (print_weights(o->model, &c, err) != 0) return -1;
    // The serving KV cache's cost per position (K and V, every layer), in
    // the dtype serve would use: what sizes the KV budget.
    printf("kv_bytes_per_token %lld\n",
           (long long)kv_bytes_per_token(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, o->kv_dtype));
    printf("  kv cache: %s, 2 x %d layers x %d kv heads x head_dim %d x %d bytes\n", bk_dtype_name(o->kv_dtype),
           c.num_hidden_layers, c.num_key_value_heads, c.head_dim, bk_dtype_bytes(o->kv_dtype));
    tok *t = tok_open(o->model, err);
    if (!t) return -1;
    printf("tokenizer: %d ids, bos %d, eos %d\n", tok_vocab_size(t), tok_bos_id(t), tok_eos_id(t));
    int rc = 0;
    if (tok_vocab_size(t) > c.vocab_size) {
        rc = err_set(err, "%s: tokenizer has %d ids but config.json vocab_size is %d", o->model, tok_vocab_size(t),
                     c.vocab_size);
    }
    if (rc == 0 && o->prompt) rc = print_prompt(o->model, t, o->prompt, o->chat_template, err);
    for (int i = 0; rc == 0 && i < o->n_adapters; i++) rc = print_adapter(o->adapters[i], &c, err);
    tok_free(t);
#ifdef TESSERA_CUDA
    char dev[1024];
    cu_device_describe(dev, sizeof dev);
    printf("cuda: %s\n", dev);
#else
    printf("cuda: not built in (CPU backend only)\n");
#endif
    return rc;
}
