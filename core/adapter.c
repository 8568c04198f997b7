#include "adapter.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "json.h"
#include "util.h"

// ---- regexes --------------------------------------------------------------
//
// PEFT matches with Python's re; PCRE2 reads the same syntax for anything an
// adapter config plausibly holds. A match limit keeps a hostile pattern from
// backtracking for minutes on a module name.

#define RE_MATCH_LIMIT 100000

static void *re_compile(const char *pattern, const char *what, err_t *err) {
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_ANCHORED | PCRE2_ENDANCHORED, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(code, msg, sizeof msg);
        err_set(err, "field %s: invalid regex \"%.80s\" at offset %zu: %s", what, pattern, (size_t)off,
                (const char *)msg);
    }
    return re;
}

static int re_full_match(void *re, const char *s) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    if (!md || !mc) {
        pcre2_match_data_free(md);
        pcre2_match_context_free(mc);
        return 0;
    }
    pcre2_set_match_limit(mc, RE_MATCH_LIMIT);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, mc);
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    return rc >= 0;
}

// ---- typed JSON fields ----------------------------------------------------

// JSON errors here carry no file name: lora_load adds the folder.
#define NOFILE(err) (&(json_ctx){NULL, "", (err)})

// ---- adapter_config.json --------------------------------------------------

static const char *all_linear[MODEL_LIN_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                  "gate_proj", "up_proj", "down_proj"};

static char **strv_new(int n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(char *)); }

static void strv_free(char **v, int n) {
    for (int i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

// target_modules / exclude_modules: a list of names, a regex string, or (for
// targets) "all-linear". A null target_modules gets PEFT's default for all
// four supported model types, q_proj and v_proj.
static int parse_modules(const cJSON *root, const char *key, int is_target, char ***names, int *n,
                         char **regex, void **re, err_t *err) {
    const cJSON *v = json_field(root, key);
    const char **src = NULL;
    static const char *qv[] = {"q_proj", "v_proj"};
    int count = 0;
    if (!v) {
        if (!is_target) return 0;
        src = qv, count = 2;
    } else if (cJSON_IsString(v)) {
        if (is_target && strcmp(v->valuestring, "all-linear") == 0) {
            src = all_linear, count = MODEL_LIN_COUNT;
        } else {
            *re = re_compile(v->valuestring, key, err);
            if (!*re) return -1;
            *regex = strdup(v->valuestring);
            return *regex ? 0 : err_set(err, "field %s: out of memory", key);
        }
    } else if (!cJSON_IsArray(v)) {
        return json_bad_type(NOFILE(err), key, "a list of module names or a string", v);
    }
    if (v && cJSON_IsArray(v)) count = cJSON_GetArraySize(v);
    if (is_target && count == 0) return err_set(err, "field %s: empty list", key);
    *names = strv_new(count);
    if (!*names) return err_set(err, "field %s: out of memory", key);
    for (int i = 0; i < count; i++) {
        const char *s = src ? src[i] : NULL;
        if (!s) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsString(e) || e->valuestring[0] == '\0')
                return err_set(err, "field %s[%d]: expected a module name, got %s", key, i,
                               json_type_name(e));
            s = e->valuestring;
        }
        (*names)[i] = strdup(s);
        *n = i + 1;
        if (!(*names)[i]) return err_set(err, "field %s: out of memory", key);
    }
    return 0;
}

// rank_pattern / alpha_pattern: {"key": number}. Keys are compiled as
// "(?:.*\.)?(?:key)" and fully matched, i.e. key matches a dotted suffix.
static int parse_patterns(const cJSON *root, const char *key, int is_rank, lora_pattern **out,
                          int *n, err_t *err) {
    const cJSON *v = json_field(root, key);
    if (!v) return 0;
    if (!cJSON_IsObject(v)) return json_bad_type(NOFILE(err), key, "an object", v);
    int count = cJSON_GetArraySize(v);
    *out = calloc((size_t)(count > 0 ? count : 1), sizeof(lora_pattern));
    if (!*out) return err_set(err, "field %s: out of memory", key);
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, v) {
        lora_pattern *p = &(*out)[i++];
        *n = i;
        char what[160];
        snprintf(what, sizeof what, "%s[\"%.80s\"]", key, e->string);
        if (is_rank) {
            int64_t r = 0;
            if (json_as_int(NOFILE(err), what, e, 1, LORA_MAX_RANK, &r) < 0) return -1;
            p->value = (double)r;
        } else {
            if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
                return err_set(err, "field %s: expected a finite number, got %s", what,
                               json_type_name(e));
            p->value = e->valuedouble;
        }
        p->key = strdup(e->string);
        size_t len = strlen(e->string) + 32;
        char *pat = malloc(len);
        if (!p->key || !pat) {
            free(pat);
            return err_set(err, "field %s: out of memory", what);
        }
        snprintf(pat, len, "(?:.*\\.)?(?:%s)", e->string);
        p->re = re_compile(pat, what, err);
        free(pat);
        if (!p->re) return -1;
    }
    return 0;
}

static int parse_layers(const cJSON *root, lora_config *c, err_t *err) {
    const cJSON *v = json_field(root, "layers_to_transform");
    if (!v) return 0;
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
    c->layers = calloc((size_t)(n > 0 ? n : 1), sizeof(int));
    if (!c->layers) return err_set(err, "field layers_to_transform: out of memory");
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, i) : v;
        int64_t l = 0;
        if (json_as_int(NOFILE(err), "layers_to_transform", e, 0, 1 << 20, &l) < 0) return -1;
        c->layers[i] = (int)l;
    }
    c->n_layers = n;
    return 0;
}

// Options that change what the adapter computes in ways serving does not
// implement: refused by name rather than silently ignored.
static int check_unsupported(const cJSON *root, err_t *err) {
    int b = 0;
    if (json_opt_bool(NOFILE(err), root, "use_dora", &b) < 0) return -1;
    if (b) return err_set(err, "field use_dora: DoRA adapters are not supported (expected false)");
    b = 0;
    if (json_opt_bool(NOFILE(err), root, "fan_in_fan_out", &b) < 0) return -1;
    if (b) return err_set(err, "field fan_in_fan_out: true is not supported (GPT-2 style Conv1D)");
    b = 0;
    if (json_opt_bool(NOFILE(err), root, "lora_bias", &b) < 0) return -1;
    if (b) return err_set(err, "field lora_bias: true is not supported (expected false)");
    b = 0;
    if (json_opt_bool(NOFILE(err), root, "use_qalora", &b) < 0) return -1;
    if (b) return err_set(err, "field use_qalora: true is not supported (expected false)");
    const char *s = NULL;
    if (json_opt_str(NOFILE(err), root, "bias", &s) < 0) return -1;
    if (s && strcmp(s, "none") != 0)
        return err_set(err, "field bias: \"%.40s\" is not supported for serving (expected \"none\")",
                       s);
    s = NULL;
    if (json_opt_str(NOFILE(err), root, "peft_type", &s) < 0) return -1;
    if (s && strcmp(s, "LORA") != 0)
        return err_set(err, "field peft_type: \"%.40s\" is not supported (expected \"LORA\")", s);
    static const char *must_be_empty[] = {"modules_to_save", "trainable_token_indices",
                                          "target_parameters", "layer_replication",
                                          "alora_invocation_tokens"};
    for (size_t i = 0; i < sizeof must_be_empty / sizeof *must_be_empty; i++) {
        const cJSON *v = json_field(root, must_be_empty[i]);
        if (v && !((cJSON_IsArray(v) || cJSON_IsObject(v)) && cJSON_GetArraySize(v) == 0))
            return err_set(err, "field %s: not supported for serving (expected null)",
                           must_be_empty[i]);
    }
    return 0;
}

static int parse_scalars(const cJSON *root, lora_config *c, err_t *err) {
    int64_t r = 8; // LoraConfig's defaults
    const cJSON *rv = json_field(root, "r");
    if (rv && json_as_int(NOFILE(err), "r", rv, 1, LORA_MAX_RANK, &r) < 0) return -1;
    c->r = (int)r;
    c->alpha = 8;
    if (json_opt_num(NOFILE(err), root, "lora_alpha", &c->alpha) < 0) return -1;
    if (json_opt_bool(NOFILE(err), root, "use_rslora", &c->use_rslora) < 0) return -1;
    if (json_opt_num(NOFILE(err), root, "lora_dropout", &c->dropout) < 0) return -1;
    if (c->dropout < 0 || c->dropout >= 1)
        return err_set(err, "field lora_dropout: %g must be in [0, 1)", c->dropout);
    const char *s = NULL;
    if (json_opt_str(NOFILE(err), root, "task_type", &s) < 0) return -1;
    if (s && strcmp(s, "CAUSAL_LM") != 0)
        return err_set(err, "field task_type: \"%.40s\" is not supported (expected \"CAUSAL_LM\")",
                       s);
    snprintf(c->task_type, sizeof c->task_type, "%s", s ? s : "");
    s = NULL;
    if (json_opt_str(NOFILE(err), root, "base_model_name_or_path", &s) < 0) return -1;
    if (s && !(c->base_model = strdup(s))) return err_set(err, "out of memory");
    return 0;
}

int lora_config_parse(const char *json, size_t len, lora_config *out, err_t *err) {
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return err_set(err, "invalid JSON");
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        err_set(err, "expected a JSON object at the top level");
        goto done;
    }
    if (check_unsupported(root, err) < 0 || parse_scalars(root, out, err) < 0 ||
        parse_modules(root, "target_modules", 1, &out->targets, &out->n_targets,
                      &out->target_regex, &out->target_re, err) < 0 ||
        parse_modules(root, "exclude_modules", 0, &out->excludes, &out->n_excludes,
                      &out->exclude_regex, &out->exclude_re, err) < 0 ||
        parse_patterns(root, "rank_pattern", 1, &out->rank_pattern, &out->n_rank_pattern, err) < 0 ||
        parse_patterns(root, "alpha_pattern", 0, &out->alpha_pattern, &out->n_alpha_pattern, err) < 0 ||
        parse_layers(root, out, err) < 0)
        goto done;
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc < 0) lora_config_free(out);
    return rc;
}

static void patterns_free(lora_pattern *p, int n) {
    for (int i = 0; p && i < n; i++) {
        free(p[i].key);
        pcre2_code_free(p[i].re);
    }
    free(p);
}

void lora_config_free(lora_config *c) {
    if (!c) return;
    strv_free(c->targets, c->n_targets);
    strv_free(c->excludes, c->n_excludes);
    free(c->target_regex);
    free(c->exclude_regex);
    pcre2_code_free(c->target_re);
    pcre2_code_free(c->exclude_re);
    patterns_free(c->rank_pattern, c->n_rank_pattern);
    patterns_free(c->alpha_pattern, c->n_alpha_pattern);
    free(c->layers);
    free(c->base_model);
    memset(c, 0, sizeof *c);
}

// ---- writing adapter_config.json -------------------------------------------

static cJSON *names_json(char **names, int n, const char *regex) {
    if (regex) return cJSON_CreateString(regex);
    if (!names) return cJSON_CreateNull();
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(names[i]));
    return a;
}

static cJSON *patterns_json(const lora_pattern *p, int n) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; o && i < n; i++) cJSON_AddNumberToObject(o, p[i].key, p[i].value);
    return o;
}

// The fields in the order PEFT 0.21's LoraConfig has them (the printer
// sorts them anyway); options tessera does not implement keep their
// defaults, which is what the adapter was trained with.
char *lora_config_to_json(const lora_config *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    static const char *nulls[] = {
        "alora_invocation_tokens", "arrow_config", "auto_mapping", "corda_config", "eva_config",
        "kasa_config", "layer_replication", "layers_pattern", "lora_ga_config", "megatron_config",
        "modules_to_save", "monteclora_config", "revision", "target_parameters",
        "trainable_token_indices", "use_bdlora", "velora_config"};
    for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++) cJSON_AddNullToObject(o, nulls[i]);
    cJSON_AddItemToObject(o, "alpha_pattern", patterns_json(c->alpha_pattern, c->n_alpha_pattern));
    if (c->base_model) cJSON_AddStringToObject(o, "base_model_name_or_path", c->base_model);
    else cJSON_AddNullToObject(o, "base_model_name_or_path");
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddFalseToObject(o, "ensure_weight_tying");
    cJSON_AddItemToObject(o, "exclude_modules", names_json(c->excludes, c->n_excludes, c->exclude_regex));
    cJSON_AddFalseToObject(o, "fan_in_fan_out");
    cJSON_AddTrueToObject(o, "inference_mode");
    cJSON_AddTrueToObject(o, "init_lora_weights");
    if (c->layers) {
        cJSON *l = cJSON_AddArrayToObject(o, "layers_to_transform");
        for (int i = 0; l && i < c->n_layers; i++) cJSON_AddItemToArray(l, cJSON_CreateNumber(c->layers[i]));
    } else {
        cJSON_AddNullToObject(o, "layers_to_transform");
    }
    cJSON_AddObjectToObject(o, "loftq_config");
    cJSON_AddNumberToObject(o, "lora_alpha", c->alpha);
    cJSON_AddFalseToObject(o, "lora_bias");
    cJSON_AddItemToObject(o, "lora_dropout", cfg_json_float(c->dropout));
    cJSON_AddStringToObject(o, "megatron_core", "megatron.core");
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddStringToObject(o, "peft_version", "0.21.0");
    cJSON_AddNumberToObject(o, "qalora_group_size", 16);
    cJSON_AddNumberToObject(o, "r", c->r);
    cJSON_AddItemToObject(o, "rank_pattern", patterns_json(c->rank_pattern, c->n_rank_pattern));
    cJSON_AddItemToObject(o, "target_modules", names_json(c->targets, c->n_targets, c->target_regex));
    if (c->task_type[0]) cJSON_AddStringToObject(o, "task_type", c->task_type);
    else cJSON_AddNullToObject(o, "task_type");
    cJSON_AddFalseToObject(o, "use_dora");
    cJSON_AddFalseToObject(o, "use_qalora");
    cJSON_AddBoolToObject(o, "use_rslora", c->use_rslora);
    char *s = cfg_json_print(o);
    cJSON_Delete(o);
    return s;
}

// ---- PEFT's module matching -----------------------------------------------

static int ends_with_dotted(const char *name, const char *suffix) {
    size_t a = strlen(name), b = strlen(suffix);
    return a > b && name[a - b - 1] == '.' && strcmp(name + a - b, suffix) == 0;
}

static int name_in(char **names, int n, const char *module, int *exact) {
    for (int i = 0; i < n; i++)
        if (strcmp(module, names[i]) == 0) {
            *exact = 1;
            return 1;
        }
    for (int i = 0; i < n; i++)
        if (ends_with_dotted(module, names[i])) return 1;
    return 0;
}

int lora_config_targets(const lora_config *c, const char *module, int layer) {
    int exact = 0;
    if (c->exclude_re ? re_full_match(c->exclude_re, module)
                      : name_in(c->excludes, c->n_excludes, module, &exact))
        return 0;
    if (c->target_re) return re_full_match(c->target_re, module);
    exact = 0;
    if (!name_in(c->targets, c->n_targets, module, &exact)) return 0;
    // As in PEFT, layers_to_transform narrows suffix matches only.
    if (exact || !c->layers) return 1;
    for (int i = 0; i < c->n_layers; i++)
        if (c->layers[i] == layer) return 1;
    return 0;
}

static const lora_pattern *pattern_for(const lora_pattern *p, int n, const char *module) {
    for (int i = 0; i < n; i++)
        if (strcmp(p[i].key, module) == 0) return &p[i];
    for (int i = 0; i < n; i++)
        if (re_full_match(p[i].re, module)) return &p[i];
    return NULL;
}

int lora_config_rank(const lora_config *c, const char *module) {
    const lora_pattern *p = pattern_for(c->rank_pattern, c->n_rank_pattern, module);
    return p ? (int)p->value : c->r;
}

double lora_config_alpha(const lora_config *c, const char *module) {
    const lora_pattern *p = pattern_for(c->alpha_pattern, c->n_alpha_pattern, module);
    return p ? p->value : c->alpha;
}

double lora_config_scale(const lora_config *c, const char *module) {
    int r = lora_config_rank(c, module);
    double a = lora_config_alpha(c, module);
    return c->use_rslora ? a / sqrt((double)r) : a / r;
}

// ---- adapter_model.safetensors keys ---------------------------------------

#define KEY_PREFIX "base_model.model."

// Where a tensor goes: layer, projection, A or B.
typedef struct key_slot {
    int layer, lin, is_b;
} key_slot;

static int has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

// Why a key that is not an A/B weight is there, for a useful message.
static int bad_key(const char *key, err_t *err) {
    if (strstr(key, "lora_magnitude_vector"))
        return err_set(err, "tensor %s: DoRA magnitude vectors are not supported", key);
    if (strstr(key, "lora_embedding_"))
        return err_set(err, "tensor %s: LoRA on embeddings is not supported", key);
    if (has_suffix(key, ".bias"))
        return err_set(err, "tensor %s: LoRA bias is not supported", key);
    return err_set(err,
                   "tensor %s: not a LoRA weight (expected " KEY_PREFIX
                   "<module>.lora_A.weight or .lora_B.weight)",
                   key);
}

// Splits "model.layers.N.self_attn.q_proj" into N and the projection.
static int parse_module(const char *key, const char *module, int n_layers, key_slot *slot,
                        err_t *err) {
    const char *lp = "model.layers.";
    if (strcmp(module, "lm_head") == 0 || strcmp(module, "model.embed_tokens") == 0)
        return err_set(err,
                       "tensor %s: LoRA on %s is not supported (only the q/k/v/o/gate/up/down "
                       "projections of model.layers.N)",
                       key, module);
    const char *p = module + strlen(lp);
    char *end = NULL;
    long layer = -1;
    if (strncmp(module, lp, strlen(lp)) == 0 && *p >= '0' && *p <= '9' && !(p[0] == '0' && p[1] != '.'))
        layer = strtol(p, &end, 10);
    if (layer < 0 || !end || *end != '.')
        return err_set(err,
                       "tensor %s: module %s is not a LoRA target tessera supports (expected "
                       "model.layers.N.self_attn.{q,k,v,o}_proj or model.layers.N.mlp.{gate,up,"
                       "down}_proj)",
                       key, module);
    if (layer >= n_layers)
        return err_set(err, "tensor %s: layer %ld is out of range (the base model has %d layers)",
                       key, layer, n_layers);
    for (int l = 0; l < MODEL_LIN_COUNT; l++)
        if (strcmp(end + 1, model_linear_path((model_linear)l)) == 0) {
            slot->layer = (int)layer;
            slot->lin = l;
            return 0;
        }
    return err_set(err, "tensor %s: module %s is not a LoRA target tessera supports", key, module);
}

static int parse_key(const char *key, int n_layers, key_slot *slot, char *module, size_t msize,
                     err_t *err) {
    static const struct {
        const char *suffix;
        int is_b;
    } suffixes[] = {{".lora_A.weight", 0},
                    {".lora_B.weight", 1},
                    {".lora_A.default.weight", 0},
                    {".lora_B.default.weight", 1}};
    if (strncmp(key, KEY_PREFIX, strlen(KEY_PREFIX)) != 0)
        return err_set(err, "tensor %s: expected a PEFT key starting with \"" KEY_PREFIX "\"", key);
    const char *rest = key + strlen(KEY_PREFIX);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        if (!has_suffix(rest, suffixes[i].suffix)) continue;
        size_t n = strlen(rest) - strlen(suffixes[i].suffix);
        if (n == 0 || n >= msize) break;
        memcpy(module, rest, n);
        module[n] = '\0';
        slot->is_b = suffixes[i].is_b;
        return parse_module(key, module, n_layers, slot, err);
    }
    return bad_key(key, err);
}

// ---- building the adapter -------------------------------------------------

typedef struct ab_pair {
    const sft_tensor *A, *B;
} ab_pair;

// Files every tensor into pairs[layer * 7 + lin], refusing unknown keys,
// modules the config does not target, and duplicates.
static int collect(const lora_config *lc, const sft *s, const model_config *cfg, ab_pair *pairs,
                   err_t *err) {
    char module[256];
    for (int i = 0; i < sft_count(s); i++) {
        const sft_tensor *t = sft_at(s, i);
        key_slot slot = {0, 0, 0};
        if (parse_key(t->name, cfg->num_hidden_layers, &slot, module, sizeof module, err) < 0)
            return -1;
        if (!lora_config_targets(lc, module, slot.layer))
            return err_set(err,
                           "tensor %s: module %s is not in target_modules of adapter_config.json",
                           t->name, module);
        ab_pair *p = &pairs[slot.layer * MODEL_LIN_COUNT + slot.lin];
        const sft_tensor **dst = slot.is_b ? &p->B : &p->A;
        if (*dst)
            return err_set(err, "tensor %s: duplicate lora_%c weight for %s (also %s)", t->name,
                           slot.is_b ? 'B' : 'A', module, (*dst)->name);
        *dst = t;
    }
    return 0;
}

static int check_tensor(const sft_tensor *t, int64_t rows, int64_t cols, const char *why,
                        err_t *err) {
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        char got[160];
        util_shape_str(got, sizeof got, t->ndim, t->shape);
        return err_set(err, "tensor %s: expected shape [%lld, %lld] (%s), got %s", t->name,
                       (long long)rows, (long long)cols, why, got);
    }
    if (t->dtype != SFT_F32 && t->dtype != SFT_F16 && t->dtype != SFT_BF16)
        return err_set(err, "tensor %s: expected dtype F32, F16 or BF16, got %s", t->name,
                       sft_dtype_name(t->dtype));
    return 0;
}

// Checks one (layer, projection) against the config: both halves present
// when targeted, shapes [rank, in] and [out, rank]. Fills m's sizes.
static int check_pair(const lora_config *lc, const model_config *cfg, int layer, int lin,
                      const ab_pair *p, lora_module *m, err_t *err) {
    char module[128], why[160];
    snprintf(module, sizeof module, "model.layers.%d.%s", layer,
             model_linear_path((model_linear)lin));
    memset(m, 0, sizeof *m);
    if (!p->A && !p->B) {
        if (!lora_config_targets(lc, module, layer)) return 0;
        return err_set(err,
                       "module %s is in target_modules but has no tensors (expected " KEY_PREFIX
                       "%s.lora_A.weight and .lora_B.weight)",
                       module, module);
    }
    if (!p->B || !p->A)
        return err_set(err, "tensor %s has no matching lora_%c (expected " KEY_PREFIX "%s.lora_%c.weight)",
                       (p->A ? p->A : p->B)->name, p->A ? 'B' : 'A', module, p->A ? 'B' : 'A');
    int rank = lora_config_rank(lc, module);
    model_linear_dims(cfg, (model_linear)lin, &m->out, &m->in);
    const char *rsrc = lc->n_rank_pattern && rank != lc->r ? "rank_pattern" : "r";
    snprintf(why, sizeof why, "%s=%d, in_features of %s", rsrc, rank, module);
    if (check_tensor(p->A, rank, m->in, why, err) < 0) return -1;
    snprintf(why, sizeof why, "out_features of %s, %s=%d", module, rsrc, rank);
    if (check_tensor(p->B, m->out, rank, why, err) < 0) return -1;
    m->rank = rank;
    m->scale = (float)lora_config_scale(lc, module);
    return 0;
}

// Converts one tensor into dst and refuses NaN/inf, which would poison
// every token of every request that uses the adapter.
static int load_values(const sft_tensor *t, float *dst, err_t *err) {
    if (sft_to_f32(t, dst, err) < 0) return -1;
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(dst[i]))
            return err_set(err, "tensor %s: value %lld is not finite (%g)", t->name, (long long)i,
                           (double)dst[i]);
    return 0;
}

static int fill(lora_adapter *a, const ab_pair *pairs, err_t *err) {
    int n = a->n_layers * MODEL_LIN_COUNT;
    a->n_params = 0;
    for (int i = 0; i < n; i++) {
        lora_module *m = &a->modules[i];
        a->n_params += (int64_t)m->rank * (m->in + m->out);
    }
    a->data = malloc((size_t)(a->n_params > 0 ? a->n_params : 1) * sizeof(float));
    if (!a->data) return err_set(err, "out of memory for %lld LoRA weights", (long long)a->n_params);
    float *p = a->data;
    for (int i = 0; i < n; i++) {
        lora_module *m = &a->modules[i];
        if (m->rank == 0) continue;
        m->A = p, p += (size_t)m->rank * m->in;
        m->B = p, p += (size_t)m->rank * m->out;
        if (load_values(pairs[i].A, m->A, err) < 0 || load_values(pairs[i].B, m->B, err) < 0)
            return -1;
        a->n_adapted++;
        if (m->rank > a->max_rank) a->max_rank = m->rank;
    }
    return 0;
}

static int check_layers(const lora_config *lc, const model_config *cfg, err_t *err) {
    for (int i = 0; i < lc->n_layers; i++)
        if (lc->layers[i] >= cfg->num_hidden_layers)
            return err_set(err,
                           "adapter_config.json field layers_to_transform: layer %d is out of range "
                           "(the base model has %d layers)",
                           lc->layers[i], cfg->num_hidden_layers);
    return 0;
}

lora_adapter *lora_build(const char *name, lora_config *lc, const sft *s, const model_config *cfg,
                         err_t *err) {
    int n = cfg->num_hidden_layers * MODEL_LIN_COUNT;
    lora_adapter *a = calloc(1, sizeof *a);
    ab_pair *pairs = calloc((size_t)n, sizeof *pairs);
    if (!a || !pairs) {
        free(a);
        free(pairs);
        lora_config_free(lc);
        err_set(err, "%s: out of memory", name);
        return NULL;
    }
    a->config = *lc;
    memset(lc, 0, sizeof *lc);
    a->n_layers = cfg->num_hidden_layers;
    a->name = strdup(name);
    a->modules = calloc((size_t)n, sizeof *a->modules);
    int rc = -1;
    if (!a->name || !a->modules) {
        err_set(err, "out of memory");
        goto done;
    }
    if (check_layers(&a->config, cfg, err) < 0 || collect(&a->config, s, cfg, pairs, err) < 0)
        goto done;
    for (int i = 0; i < n; i++)
        if (check_pair(&a->config, cfg, i / MODEL_LIN_COUNT, i % MODEL_LIN_COUNT, &pairs[i],
                       &a->modules[i], err) < 0)
            goto done;
    if (fill(a, pairs, err) < 0) goto done;
    if (a->n_adapted == 0) {
        err_set(err, "no LoRA tensors (the adapter adapts nothing)");
        goto done;
    }
    rc = 0;
done:
    free(pairs);
    if (rc < 0) {
        err_wrap(err, "%s", name);
        lora_free(a);
        return NULL;
    }
    return a;
}

struct lora_source {
    char *dir;
    char *json; // adapter_config.json
    size_t len;
    sft *weights;
    char *bytes; // the weights file's contents, which weights views
    char *real_config, *real_weights; // where the two files read really lie
};

lora_source *lora_source_open(const char *dir, err_t *err) {
    lora_source *src = calloc(1, sizeof *src);
    char *cpath = util_path_join(dir, "adapter_config.json");
    char *wpath = util_path_join(dir, "adapter_model.safetensors");
    if (!src || !cpath || !wpath || !(src->dir = strdup(dir))) {
        err_set(err, "%s: out of memory", dir);
        goto fail;
    }
    if (!(src->json = util_read_file_real(cpath, &src->len, &src->real_config, err))) goto fail;
    if (!util_is_file(wpath)) {
        char *bin = util_path_join(dir, "adapter_model.bin");
        err_set(err, "%s: missing adapter_model.safetensors%s", dir,
                bin && util_is_file(bin) ? " (adapter_model.bin, a pickle, is not supported)" : "");
        free(bin);
        goto fail;
    }
    // Read, not mapped: a file written over in place (even truncated) must
    // not change or fault the version already validated and served.
    size_t wlen;
    if (!(src->bytes = util_read_file_real(wpath, &wlen, &src->real_weights, err)) ||
        !(src->weights = sft_open_memory(src->bytes, wlen, wpath, err)))
        goto fail;
    free(cpath);
    free(wpath);
    return src;
fail:
    free(cpath);
    free(wpath);
    lora_source_close(src);
    return NULL;
}

lora_adapter *lora_source_build(const lora_source *src, const model_config *cfg, err_t *err) {
    lora_config lc;
    if (lora_config_parse(src->json, src->len, &lc, err) < 0) {
        err_wrap(err, "%s/adapter_config.json", src->dir);
        return NULL;
    }
    return lora_build(src->dir, &lc, src->weights, cfg, err);
}

void lora_source_close(lora_source *src) {
    if (!src) return;
    sft_close(src->weights);
    free(src->bytes);
    free(src->json);
    free(src->dir);
    free(src->real_config);
    free(src->real_weights);
    free(src);
}

const char *lora_source_real_path(const lora_source *src, int weights) {
    return weights ? src->real_weights : src->real_config;
}

lora_adapter *lora_load(const char *dir, const model_config *cfg, err_t *err) {
    lora_source *src = lora_source_open(dir, err);
    if (!src) return NULL;
    lora_adapter *a = lora_source_build(src, cfg, err);
    lora_source_close(src);
    return a;
}

void lora_free(lora_adapter *a) {
    if (!a) return;
    lora_config_free(&a->config);
    free(a->modules);
    free(a->data);
    free(a->name);
    free(a);
}

void lora_describe(const lora_adapter *a, FILE *f) {
    const lora_config *c = &a->config;
    int min_rank = 0, layers = 0;
    unsigned kinds = 0;
    for (int l = 0; l < a->n_layers; l++) {
        int any = 0;
        for (int m = 0; m < MODEL_LIN_COUNT; m++) {
            const lora_module *mod = lora_at(a, l, (model_linear)m);
            if (!mod->rank) continue;
            any = 1;
            kinds |= 1u << m;
            if (!min_rank || mod->rank < min_rank) min_rank = mod->rank;
        }
        layers += any;
    }
    fprintf(f, "  r %d, lora_alpha %g, scale %g (%s)", c->r, c->alpha,
            c->use_rslora ? c->alpha / sqrt((double)c->r) : c->alpha / c->r,
            c->use_rslora ? "rsLoRA: alpha/sqrt(r)" : "alpha/r");
    if (c->n_rank_pattern || c->n_alpha_pattern)
        fprintf(f, "; %d rank_pattern, %d alpha_pattern entries", c->n_rank_pattern,
                c->n_alpha_pattern);
    fprintf(f, "\n  adapted: %d modules in %d of %d layers:", a->n_adapted, layers, a->n_layers);
    for (int m = 0; m < MODEL_LIN_COUNT; m++)
        if (kinds >> m & 1) fprintf(f, " %s", model_linear_name((model_linear)m));
    if (min_rank != a->max_rank) fprintf(f, "; ranks %d..%d", min_rank, a->max_rank);
    fprintf(f, "\n  %lld parameters (%.2f MiB as f32)", (long long)a->n_params,
            (double)a->n_params * 4 / (1 << 20));
    if (c->base_model) fprintf(f, "; base model %s", c->base_model);
    fprintf(f, "\n");
}
