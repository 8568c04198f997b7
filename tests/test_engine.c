// test_engine: the one-sequence generation loop (serve/engine.c) on the
// oracle models: greedy continuations equal transformers' (with and without
// an adapter, and with a prompt prefilled in several chunks), stop ids end
// generation, a seeded sampler repeats itself, the callback can stop it,
// and every KV block comes back.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "check.h"
#include "../serve/engine.h"
#include "model.h"
#include "safetensors.h"

#define ORACLE "tests/fixtures/oracle"
#define NGREEDY 16

typedef struct collect {
    int32_t tok[64];
    int n;
    int stop_after; // 0 = never
} collect;

static int on_token(void *ctx, int32_t token, const sampler_result *r) {
    collect *c = ctx;
    if (c->n < 64) c->tok[c->n++] = token;
    return c->stop_after && c->n >= c->stop_after;
}

static int gen(model *m, kv_cache *kv, const int32_t *p, int n, int slot, const sampler_params *sp, int max,
               collect *c, engine_stats *st) {
    err_t err = {{0}};
    engine_gen_opts o = {slot, max, sp};
    c->n = 0;
    int rc = engine_generate(m, kv, p, n, &o, on_token, c, st, &err);
    CHECK(rc == 0, "%s", err.msg);
    return rc;
}

// Greedy continuations of the 3 prompts vs the reference file.
static void check_greedy(model *m, kv_cache *kv, const char *path, int slot, const char *label) {
    err_t err = {{0}};
    sft *s = sft_open(path, &err);
    CHECK(s != NULL, "%s", err.msg);
    if (!s) return;
    sampler_params sp = sampler_params_default();
    sp.temperature = 0;
    int ok = 0;
    for (int i = 0; i < 3; i++) {
        char name[32];
        int32_t prompt[64], want[NGREEDY];
        snprintf(name, sizeof name, "prompt%d", i);
        int n = check_load_i64(s, name, prompt, 64);
        snprintf(name, sizeof name, "greedy%d", i);
        CHECK(n > 0 && check_load_i64(s, name, want, NGREEDY) == NGREEDY, "%s: reference", path);
        collect c = {0};
        engine_stats st;
        if (gen(m, kv, prompt, n, slot, &sp, NGREEDY, &c, &st) < 0) continue;
        int same = c.n == NGREEDY && memcmp(c.tok, want, sizeof want) == 0;
        CHECK(same, "%s prompt%d: greedy differs", label, i);
        CHECK(st.finish == ENGINE_FINISH_LENGTH && st.generated == NGREEDY && st.prompt_tokens == n, "stats");
        ok += same;
    }
    printf("  %-28s greedy %d/3 match\n", label, ok);
    sft_close(s);
}

static void check_model(const char *arch) {
    char mdir[256], path[256];
    snprintf(mdir, sizeof mdir, ORACLE "/%s/model", arch);
    printf("%s\n", arch);
    err_t err = {{0}};
    model_opts o = model_opts_default();
    o.quant = MODEL_LOAD_NONE;
    model *m = model_load(mdir, &o, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    kv_cache *kv = model_kv_new(m, 4, 32, 2, 64, &err);
    snprintf(path, sizeof path, ORACLE "/%s/base_logits.safetensors", arch);
    check_greedy(m, kv, path, -1, "base");
    snprintf(path, sizeof path, ORACLE "/%s/adapters/b_all_r16", arch);
    lora_adapter *a = lora_load(path, model_get_config(m), &err);
    CHECK(a && model_adapter_set(m, 2, a, &err) == 0, "%s", err.msg);
    lora_free(a);
    snprintf(path, sizeof path, ORACLE "/%s/b_all_r16_logits.safetensors", arch);
    check_greedy(m, kv, path, 2, "b_all_r16");
    // prompts prefilled in chunks of 4 (the model holds 4 tokens per forward)
    CHECK(model_reserve(m, 4, &err) == 0, "%s", err.msg);
    check_greedy(m, kv, path, 2, "b_all_r16, prefill chunks of 4");
    CHECK(kv_free_blocks(kv) == 32, "blocks back: %d", kv_free_blocks(kv));
    kv_free(kv);
    model_free(m);
}

// Stop ids, seeded sampling, the callback stopping, bad requests.
static void check_controls(void) {
    err_t err = {{0}};
    model_opts o = model_opts_default();
    model *m = model_load(ORACLE "/qwen3/model", &o, &err); // NF4, double quant
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    kv_cache *kv = model_kv_new(m, 4, 32, 2, 64, &err);
    int32_t prompt[] = {1, 400, 401, 402, 7, 7, 7, 12, 300, 88, 5};
    sampler_params sp = sampler_params_default();
    sp.temperature = 0;
    collect g = {0}, c = {0};
    engine_stats st;
    gen(m, kv, prompt, 11, -1, &sp, 12, &g, &st);

    // stop at the latest token that first appears in the greedy text
    int k = 0;
    for (int i = 1; i < g.n; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= g.tok[j] == g.tok[i];
        if (!seen) k = i;
    }
    int32_t stop = g.tok[k];
    sp.stop_ids = &stop;
    sp.n_stop_ids = 1;
    gen(m, kv, prompt, 11, -1, &sp, 12, &c, &st);
    CHECK(st.finish == ENGINE_FINISH_STOP && c.n == k + 1 && c.tok[k] == stop, "stop id: finish %d after %d tokens",
          st.finish, c.n);
    sp.n_stop_ids = 0;

    // the callback stops after 3
    c.stop_after = 3;
    gen(m, kv, prompt, 11, -1, &sp, 12, &c, &st);
    CHECK(st.finish == ENGINE_FINISH_CALLER && c.n == 3 && st.generated == 3, "caller stop");

    // seeded sampling repeats; another seed gives another text
    sp.temperature = 1.0f;
    sp.seed = 42;
    collect s1 = {0}, s2 = {0}, s3 = {0};
    gen(m, kv, prompt, 11, -1, &sp, 16, &s1, &st);
    gen(m, kv, prompt, 11, -1, &sp, 16, &s2, &st);
    sp.seed = 43;
    gen(m, kv, prompt, 11, -1, &sp, 16, &s3, &st);
    CHECK(s1.n == 16 && s2.n == 16 && memcmp(s1.tok, s2.tok, sizeof s1.tok) == 0, "same seed, same tokens");
    CHECK(memcmp(s1.tok, s3.tok, 16 * sizeof(int32_t)) != 0, "seeds 42 and 43 gave the same 16 tokens");

    // refused: no room, bad params, empty prompt
    engine_gen_opts go = {-1, 100, &sp};
    CHECK(engine_generate(m, kv, prompt, 11, &go, NULL, NULL, NULL, &err) < 0 && strstr(err.msg, "max_seq_len"),
          "%s", err.msg);
    go.max_tokens = 4;
    sp.temperature = 3;
    CHECK(engine_generate(m, kv, prompt, 11, &go, NULL, NULL, NULL, &err) < 0 && strstr(err.msg, "temperature"),
          "%s", err.msg);
    sp.temperature = 0;
    CHECK(engine_generate(m, kv, prompt, 0, &go, NULL, NULL, NULL, &err) < 0, "empty prompt accepted");
    CHECK(kv_free_blocks(kv) == 32, "blocks back after failures: %d", kv_free_blocks(kv));
    printf("controls: stop id after %d tokens, caller stop, seeded sampling, refusals\n", k + 1);
    kv_free(kv);
    model_free(m);
}

int main(void) {
    const char *archs[] = {"llama3", "qwen2", "qwen3", "mistral"};
    for (int i = 0; i < 4; i++) check_model(archs[i]);
    check_controls();
    bk_cpu_shutdown();
    return check_finish("test_engine");
}
