// test_fuzz_adapter: deterministic mutations of real adapter_config.json
// files (byte flips, truncations, insertions, deletions, splices, type
// swaps, huge numbers, deep nesting) through lora_config_parse, some through
// a whole lora_load on a temp folder (also with mutated safetensors
// headers), and mutations of config.json through model_config_parse.
// Under ASan/UBSan: nothing crashes or leaks, every failure is -1 with a
// message, and every config that parses writes back (lora_config_to_json)
// to text that parses to the same values.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapter.h"
#include "check.h"
#include "config.h"
#include "util.h"

#define ORACLE "tests/fixtures/oracle"
#define N_CONFIG 20000
#define N_LOAD 1000
#define N_HEADER 1000
#define N_MODEL 5000

typedef struct buf {
    char *p;
    size_t len;
} buf;

static util_rng rng;

static size_t pick(size_t n) { return n ? (size_t)(util_rng_next(&rng) % n) : 0; }

// Seeds beyond the oracle files, for the options they leave at defaults.
static const char *extra_seeds[] = {
    "{\"r\":8,\"lora_alpha\":16,\"target_modules\":\"all-linear\",\"rank_pattern\":{\"q_proj\":4,"
    "\"model.layers.1.mlp.down_proj\":2},\"alpha_pattern\":{\"self_attn.q_proj\":32.0},"
    "\"layers_to_transform\":[1],\"base_model_name_or_path\":\"Qwen/Qwen3-8B\",\"lora_dropout\":0.05,"
    "\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"use_rslora\":true}",
    "{\"r\":4,\"lora_alpha\":8,\"target_modules\":\".*\\\\.(q_proj|v_proj)\",\"exclude_modules\":"
    "[\"model.layers.0.self_attn.v_proj\"],\"layers_to_transform\":0,\"bias\":\"none\"}",
};

// Fragments that JSON and our parser treat specially.
static const char *tokens[] = {
    "{", "}", "[", "]", "\"", ",", ":", "null", "true", "false", "-1", "0", "1e999", "-1e999",
    "1e308", "9223372036854775807", "18446744073709551616", "0.5", "-0", "NaN", "\\u0000",
    "\\ud800", "\"all-linear\"", "\"(\"", "\".*\"", "\"q_proj\"", "65537", "[[[[", "{\"a\":",
    "\xff\xfe", "\"r\":", "\"lora_alpha\":", "\"use_dora\":true", "\"rank_pattern\":{\"(\":1}",
};

// Values a type swap puts in place of a field's value.
static cJSON *random_value(void) {
    switch (pick(14)) {
    case 0: return cJSON_CreateNull();
    case 1: return cJSON_CreateBool((int)pick(2));
    case 2: return cJSON_CreateNumber(-1);
    case 3: return cJSON_CreateNumber(1e308);
    case 4: return cJSON_CreateNumber(0.5);
    case 5: return cJSON_CreateNumber((double)pick(70000));
    case 6: return cJSON_CreateString("");
    case 7: return cJSON_CreateString("all-linear");
    case 8: return cJSON_CreateString("(((a*)*)*)*b");
    case 9: return cJSON_CreateArray();
    case 10: return cJSON_CreateObject();
    case 11: {
        cJSON *a = cJSON_CreateArray();
        cJSON_AddItemToArray(a, cJSON_CreateString("q_proj"));
        cJSON_AddItemToArray(a, cJSON_CreateNumber(3));
        return a;
    }
    case 12: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "q_proj", (double)pick(5));
        cJSON_AddStringToObject(o, "v_proj", "x");
        return o;
    }
    default: return cJSON_CreateRaw("1e999");
    }
}

// Parses, swaps one field's value (or adds one), prints again.
static buf type_swap(const buf *in) {
    buf out = {0};
    cJSON *root = cJSON_ParseWithLength(in->p, in->len);
    if (!root) return out;
    int n = cJSON_GetArraySize(root);
    static const char *keys[] = {"r", "lora_alpha", "target_modules", "rank_pattern",
                                 "alpha_pattern", "layers_to_transform", "use_rslora", "bias",
                                 "exclude_modules", "peft_type", "modules_to_save", "lora_dropout"};
    if (n > 0 && pick(3)) {
        cJSON *victim = cJSON_GetArrayItem(root, (int)pick((size_t)n));
        cJSON_ReplaceItemInObjectCaseSensitive(root, victim->string, random_value());
    } else {
        const char *k = keys[pick(sizeof keys / sizeof *keys)];
        cJSON_DeleteItemFromObjectCaseSensitive(root, k);
        cJSON_AddItemToObject(root, k, random_value());
    }
    out.p = cJSON_PrintUnformatted(root);
    out.len = out.p ? strlen(out.p) : 0;
    cJSON_Delete(root);
    return out;
}

// Wraps the text at a random point in depth brackets (past cJSON's limit of
// 1000 sometimes).
static buf deep_nest(const buf *in) {
    size_t depth = 1 + pick(1500), at = pick(in->len + 1);
    buf out = {malloc(in->len + 2 * depth + 1), in->len + 2 * depth};
    memcpy(out.p, in->p, at);
    memset(out.p + at, '[', depth);
    memset(out.p + at + depth, ']', depth);
    memcpy(out.p + at + 2 * depth, in->p + at, in->len - at);
    out.p[out.len] = '\0';
    return out;
}

static buf mutate(const buf *seeds, int n_seeds) {
    const buf *in = &seeds[pick((size_t)n_seeds)];
    int kind = (int)pick(8);
    if (kind == 6) return type_swap(in);
    if (kind == 7) return deep_nest(in);
    size_t extra = 64;
    buf out = {malloc(in->len + extra + 1), in->len};
    memcpy(out.p, in->p, in->len);
    int rounds = 1 + (int)pick(3);
    for (int r = 0; r < rounds && out.len > 0; r++) {
        size_t at = pick(out.len);
        switch (kind) {
        case 0: out.p[at] ^= (char)(1u << pick(8)); break;            // bit flip
        case 1: out.p[at] = (char)pick(256); break;                   // byte set
        case 2: out.len = at; break;                                  // truncate
        case 3: {                                                     // insert a token
            const char *t = tokens[pick(sizeof tokens / sizeof *tokens)];
            size_t tl = strlen(t);
            if (out.len + tl > in->len + extra) break;
            memmove(out.p + at + tl, out.p + at, out.len - at);
            memcpy(out.p + at, t, tl);
            out.len += tl;
            break;
        }
        case 4: {                                                     // delete a span
            size_t n = 1 + pick(32);
            if (at + n > out.len) n = out.len - at;
            memmove(out.p + at, out.p + at + n, out.len - at - n);
            out.len -= n;
            break;
        }
        default: {                                                    // splice another seed's tail
            const buf *o = &seeds[pick((size_t)n_seeds)];
            size_t from = pick(o->len), n = o->len - from;
            if (at + n > in->len + extra) n = in->len + extra - at;
            memcpy(out.p + at, o->p + from, n);
            out.len = at + n;
            break;
        }
        }
    }
    out.p[out.len] = '\0';
    return out;
}

// What a parsed config must survive: matching queries and a write-back
// that parses to the same values.
static void exercise(const lora_config *c) {
    static const char *mods[] = {"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj",
                                 "model.layers.7.self_attn.v_proj", "lm_head", ""};
    for (int i = 0; i < 5; i++) {
        (void)lora_config_targets(c, mods[i], i);
        int r = lora_config_rank(c, mods[i]);
        CHECK(r >= 1 && r <= LORA_MAX_RANK, "rank %d", r);
        (void)lora_config_scale(c, mods[i]);
    }
    char *text = lora_config_to_json(c);
    CHECK(text != NULL);
    if (!text) return;
    lora_config c2;
    err_t e = {{0}};
    int rc = lora_config_parse(text, strlen(text), &c2, &e);
    CHECK(rc == 0, "write-back does not parse: %s\n%s", e.msg, text);
    if (rc == 0) {
        CHECK(c2.r == c->r && c2.alpha == c->alpha && c2.use_rslora == c->use_rslora);
        CHECK(c2.n_targets == c->n_targets && c2.n_layers == c->n_layers);
        CHECK(c2.n_rank_pattern == c->n_rank_pattern && (c2.target_regex != NULL) == (c->target_regex != NULL));
        lora_config_free(&c2);
    }
    free(text);
}

static int n_ok, n_fail;

static void fuzz_config(const buf *seeds, int n_seeds) {
    for (int i = 0; i < N_CONFIG; i++) {
        buf m = mutate(seeds, n_seeds);
        if (!m.p) continue;
        lora_config c;
        err_t e = {{0}};
        int rc = lora_config_parse(m.p, m.len, &c, &e);
        CHECK(rc == 0 || rc == -1);
        if (rc == 0) {
            n_ok++;
            exercise(&c);
        } else {
            n_fail++;
            CHECK(e.msg[0] != '\0', "empty error for mutation %d", i);
        }
        lora_config_free(&c);
        free(m.p);
    }
}

// Same-length word swaps inside the safetensors header keep offsets valid
// and turn keys into other modules, layers, halves or unknown names.
static void swap_word(char *h, size_t n) {
    static const char *groups[][4] = {
        {"q_proj", "k_proj", "v_proj", "o_proj"}, {"lora_A", "lora_B", "lora_C", "lorb_A"},
        {"layers.0", "layers.1", "layers.7", "layerz.1"}, {"gate_proj", "down_proj", "gate_prok", "head_proj"},
        {"up_proj", "xx_proj", "up_proj", "up_proj"}, {"self_attn", "self_attX", "mlp.xxxxx", "self_attn"},
        {"base_model", "base_modex", "model.base", "base_model"}, {"weight", "bias__", "weigh.", "weight"},
        {"F32", "I32", "F16", "U8\""}};
    int g = (int)pick(sizeof groups / sizeof *groups);
    const char *from = groups[g][pick(4)], *to = groups[g][pick(4)];
    size_t fl = strlen(from);
    if (strlen(to) != fl || n < fl) return;
    size_t start = pick(n - fl + 1);
    for (size_t i = 0; i + fl <= n; i++) {
        size_t at = (start + i) % (n - fl + 1);
        if (memcmp(h + at, from, fl) == 0) {
            memcpy(h + at, to, fl);
            return;
        }
    }
}

static void write_file(const char *dir, const char *name, const void *p, size_t n) {
    err_t e = {{0}};
    char *path = util_path_join(dir, name);
    CHECK(util_write_file_atomic(path, p, n, &e) == 0, "%s", e.msg);
    free(path);
}

static void load_once(const char *dir, const model_config *cfg, int *ok) {
    err_t e = {{0}};
    lora_adapter *a = lora_load(dir, cfg, &e);
    if (a) (*ok)++;
    else CHECK(e.msg[0] != '\0', "lora_load failed with an empty message");
    if (!a && getenv("FUZZ_VERBOSE")) printf("  %s\n", e.msg);
    lora_free(a);
}

// Whole loads: mutated configs beside the real tensors of an all-linear
// adapter, then the real config beside tensors whose header was mutated.
static void fuzz_load(const buf *seeds, int n_seeds) {
    model_config cfg;
    err_t e = {{0}};
    CHECK(model_config_load(ORACLE "/llama3/model", &cfg, &e) == 0, "%s", e.msg);
    size_t wlen, clen;
    char *weights = util_read_file(ORACLE "/llama3/adapters/b_all_r16/adapter_model.safetensors", &wlen, &e);
    char *config = util_read_file(ORACLE "/llama3/adapters/b_all_r16/adapter_config.json", &clen, &e);
    char dir[] = "/tmp/tessera_fuzz_adapter_XXXXXX";
    if (!weights || !config || !mkdtemp(dir)) {
        CHECK(0, "setup: %s", e.msg);
        free(weights);
        free(config);
        return;
    }
    int ok = 0;
    write_file(dir, "adapter_model.safetensors", weights, wlen);
    for (int i = 0; i < N_LOAD; i++) {
        buf m = mutate(seeds, n_seeds);
        if (!m.p) continue;
        write_file(dir, "adapter_config.json", m.p, m.len);
        load_once(dir, &cfg, &ok);
        free(m.p);
    }
    int ok_config = ok;
    ok = 0;
    // The header: 8 length bytes, then JSON naming keys, dtypes, shapes.
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)(unsigned char)weights[i] << (8 * i);
    write_file(dir, "adapter_config.json", config, clen);
    char *w = malloc(wlen);
    for (int i = 0; i < N_HEADER && w; i++) {
        memcpy(w, weights, wlen);
        int flips = 1 + (int)pick(3);
        for (int k = 0; k < flips; k++) {
            if (pick(4) == 0) { // a raw byte: mostly breaks the header JSON
                w[8 + pick(hlen)] = (char)('0' + pick(75));
                continue;
            }
            swap_word(w + 8, (size_t)hlen);
        }
        write_file(dir, "adapter_model.safetensors", w, wlen);
        load_once(dir, &cfg, &ok);
    }
    printf("lora_load: %d/%d mutated configs loaded, %d/%d mutated headers loaded\n", ok_config,
           N_LOAD, ok, N_HEADER);
    free(w);
    char *p1 = util_path_join(dir, "adapter_config.json"), *p2 = util_path_join(dir, "adapter_model.safetensors");
    unlink(p1);
    unlink(p2);
    free(p1);
    free(p2);
    rmdir(dir);
    free(weights);
    free(config);
}

// config.json mutations through model_config_parse.
static void fuzz_model_config(void) {
    static const char *archs[] = {"llama3", "qwen2", "qwen3", "mistral"};
    buf seeds[5];
    err_t e = {{0}};
    for (int i = 0; i < 4; i++) {
        char path[128];
        snprintf(path, sizeof path, ORACLE "/%s/model/config.json", archs[i]);
        seeds[i].p = util_read_file(path, &seeds[i].len, &e);
        CHECK(seeds[i].p != NULL, "%s", e.msg);
        if (!seeds[i].p) return;
    }
    seeds[4].p = util_read_file("tests/fixtures/configs/llama3.1-8b-instruct/config.json", &seeds[4].len, &e);
    CHECK(seeds[4].p != NULL, "%s", e.msg);
    int ok = 0;
    for (int i = 0; seeds[4].p && i < N_MODEL; i++) {
        buf m = mutate(seeds, 5);
        if (!m.p) continue;
        model_config c;
        err_t me = {{0}};
        int rc = model_config_parse(m.p, m.len, "fuzz/config.json", &c, &me);
        CHECK(rc == 0 || (rc == -1 && strstr(me.msg, "fuzz/config.json")), "rc %d msg \"%s\"", rc, me.msg);
        if (rc == 0) {
            ok++;
            CHECK(c.hidden_size > 0 && c.num_key_value_heads > 0 &&
                  c.num_attention_heads % c.num_key_value_heads == 0 && c.head_dim % 2 == 0);
        }
        free(m.p);
    }
    printf("model_config_parse: %d/%d mutations parsed\n", ok, N_MODEL);
    for (int i = 0; i < 5; i++) free(seeds[i].p);
}

int main(void) {
    util_rng_seed(&rng, 20240611);
    static const char *archs[] = {"llama3", "qwen2", "qwen3", "mistral"};
    static const char *names[] = {"a_qv_r8", "b_all_r16", "c_rslora_r4"};
    buf seeds[16];
    int n = 0;
    err_t e = {{0}};
    for (int a = 0; a < 4; a++)
        for (int k = 0; k < 3; k++) {
            char path[200];
            snprintf(path, sizeof path, ORACLE "/%s/adapters/%s/adapter_config.json", archs[a], names[k]);
            seeds[n].p = util_read_file(path, &seeds[n].len, &e);
            CHECK(seeds[n].p != NULL, "%s", e.msg);
            if (seeds[n].p) n++;
        }
    for (size_t i = 0; i < sizeof extra_seeds / sizeof *extra_seeds; i++) {
        seeds[n].p = strdup(extra_seeds[i]);
        seeds[n].len = strlen(extra_seeds[i]);
        n++;
    }
    // every seed parses as it is
    for (int i = 0; i < n; i++) {
        lora_config c;
        CHECK(lora_config_parse(seeds[i].p, seeds[i].len, &c, &e) == 0, "seed %d: %s", i, e.msg);
        lora_config_free(&c);
    }
    fuzz_config(seeds, n);
    printf("lora_config_parse: %d mutations parsed, %d refused\n", n_ok, n_fail);
    CHECK(n_ok > 100 && n_fail > 100, "the mutations should reach both outcomes");
    fuzz_load(seeds, n);
    fuzz_model_config();
    for (int i = 0; i < n; i++) free(seeds[i].p);
    return check_finish("test_fuzz_adapter");
}
