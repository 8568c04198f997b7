// adapter: PEFT LoRA adapters (adapter_config.json + adapter_model.safetensors)
// read into per-layer, per-projection f32 A/B matrices with their scales.
//
// What PEFT writes and we read:
//   adapter_config.json: r, lora_alpha, target_modules (list, "all-linear",
//     or one regex), exclude_modules, use_rslora, rank_pattern, alpha_pattern,
//     layers_to_transform, ...
//   adapter_model.safetensors: base_model.model.<module>.lora_A.weight [r, in]
//     and .lora_B.weight [out, r] (F32/F16/BF16), <module> like
//     model.layers.3.self_attn.q_proj; ".lora_A.default.weight" is tolerated.
//   y = W x + scale * B (A x), scale = alpha / r, or alpha / sqrt(r) (rsLoRA).
//
// Matching follows PEFT: a module is targeted when its name equals a
// target_modules entry or ends with "." + entry (a string target_modules is
// a regex that must match the whole name); layers_to_transform then limits
// suffix matches to the listed layers. rank_pattern / alpha_pattern keys
// match when the name ends with "." + key (or is key), key read as a regex,
// first key in file order wins.
//
// Only what serving can honour is accepted: peft_type LORA, bias "none", no
// DoRA, no fan_in_fan_out, no lora_bias, no modules_to_save, no LoRA on
// embeddings or lm_head. Everything else is an error naming the field.
#ifndef TESSERA_ADAPTER_H
#define TESSERA_ADAPTER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "err.h"
#include "safetensors.h"

#define LORA_MAX_RANK 65536

typedef struct lora_pattern {
    char *key; // as written in rank_pattern / alpha_pattern
    double value;
    void *re;  // compiled "(?:.*\.)?(?:key)$" (private)
} lora_pattern;

typedef struct lora_config {
    int r;
    double alpha;
    int use_rslora;
    // target_modules: a list of names (all-linear becomes the seven
    // projection names) or one regex; same for exclude_modules.
    char **targets;
    int n_targets;
    char *target_regex; // NULL unless target_modules was a (non all-linear) string
    char **excludes;
    int n_excludes;
    char *exclude_regex;
    lora_pattern *rank_pattern;
    int n_rank_pattern;
    lora_pattern *alpha_pattern;
    int n_alpha_pattern;
    int *layers; // layers_to_transform; NULL = every layer
    int n_layers;
    char *base_model; // base_model_name_or_path, NULL if absent
    char task_type[32];
    double dropout;
    void *target_re, *exclude_re; // compiled regexes (private)
} lora_config;

// Parses adapter_config.json text into out (which it owns afterwards: free
// with lora_config_free). On error returns -1, fills err with the field and
// what was expected (no file name: the caller wraps it) and leaves out
// empty (lora_config_free on it is safe).
int lora_config_parse(const char *json, size_t len, lora_config *out, err_t *err);
void lora_config_free(lora_config *c);

// adapter_config.json text for c with every field PEFT 0.21 writes, in its
// format (json.dumps(indent=2, sort_keys=True), no trailing newline), so a
// trained adapter loads in PEFT as if PEFT had saved it. A new string
// (free()), or NULL on out of memory.
char *lora_config_to_json(const lora_config *c);

// 1 if PEFT would put a LoRA on module (e.g. "model.layers.3.mlp.up_proj")
// in layer `layer`, else 0.
int lora_config_targets(const lora_config *c, const char *module, int layer);
// The rank / alpha for a module after rank_pattern / alpha_pattern.
int lora_config_rank(const lora_config *c, const char *module);
double lora_config_alpha(const lora_config *c, const char *module);
// alpha/r, or alpha/sqrt(r) with use_rslora, for that module.
double lora_config_scale(const lora_config *c, const char *module);

// One adapted projection. rank 0 = not adapted (A, B NULL).
typedef struct lora_module {
    int rank;
    int in, out; // the base weight is [out, in]
    float scale;
    float *A; // [rank, in], row-major
    float *B; // [out, rank]
} lora_module;

typedef struct lora_adapter {
    char *name;         // the folder (or the name given to lora_build)
    lora_config config;
    int n_layers;
    lora_module *modules; // n_layers * MODEL_LIN_COUNT; use lora_at
    int max_rank;
    int n_adapted;      // modules with rank > 0
    int64_t n_params;   // floats in every A and B
    float *data;        // one allocation holding every A and B
} lora_adapter;

static inline const lora_module *lora_at(const lora_adapter *a, int layer, model_linear l) {
    return &a->modules[layer * MODEL_LIN_COUNT + l];
}

// Loads dir/adapter_config.json and dir/adapter_model.safetensors and checks
// them against the base model's config. Returns a new adapter (free with
// lora_free) or NULL + err naming the folder, the tensor key or config field,
// and what was expected.
lora_adapter *lora_load(const char *dir, const model_config *cfg, err_t *err);

// An adapter folder's files held: the config text and the weights file
// read into memory (adapters are small; a mapping would change or fault
// when the file is written over in place). Building from it later reads
// what the folder held when it was opened, even if the folder has since
// been renamed over, removed or overwritten, which is what lets a
// server finish every request on the version it was resolved to. Building
// only reads the source, so threads may build from one source at once.
typedef struct lora_source lora_source;

// Opens dir's adapter_config.json and adapter_model.safetensors. Returns a
// new source (free with lora_source_close) or NULL + err naming the file.
lora_source *lora_source_open(const char *dir, err_t *err);
// What lora_load returns, from the source's files.
lora_adapter *lora_source_build(const lora_source *src, const model_config *cfg, err_t *err);
void lora_source_close(lora_source *src);
// The real path (symlinks resolved) of the file the source read: its
// adapter_config.json (weights 0) or adapter_model.safetensors (1), taken
// from the open descriptor, so a confinement check on it has no gap between
// check and read. Borrowed.
const char *lora_source_real_path(const lora_source *src, int weights);

// The same from parts already in memory: takes ownership of *lc (it is
// emptied, even on failure); borrows s (the tensors are copied to f32).
lora_adapter *lora_build(const char *name, lora_config *lc, const sft *s, const model_config *cfg,
                         err_t *err);

void lora_free(lora_adapter *a);

// A few human-readable lines about a loaded adapter (rank, alpha, scale,
// adapted projections and layers, parameter count, base model) written to f.
void lora_describe(const lora_adapter *a, FILE *f);

#endif
