// generate: the command-line generation mode. Loads a model (and
// optionally one adapter), renders the prompt with the model's chat
// template (or takes it raw), tokenizes, and streams the generated text to
// stdout as it is sampled (UTF-8 safe), stopping at an EOS id.
//
//   --model DIR          Hugging Face model folder (required)
//   --adapter DIR        PEFT adapter folder, applied to every token
//   --prompt TEXT        the user message (required)
//   --system TEXT        a system message before it (chat mode only)
//   --raw                no chat template: TEXT is tokenized as it is, with
//                        the tokenizer's BOS if it adds one; special tokens
//                        written in TEXT are parsed
//   --chat-template NAME override the detected family (chatml, qwen2,
//                        qwen2.5, qwen3, llama3, llama3-genprompt, llama3.1)
//   --max-tokens N       tokens to generate at most (default 256)
//   --temperature T      0 = greedy (the default); else sample
//   --top-p P            nucleus sampling (default 1 = off)
//   --top-k K            (default 0 = off)
//   --seed N             sampling seed (default 0)
//   --quant nf4|none     decoder weights NF4 (default) or dense as stored
//   --threads N          CPU threads (default: all online CPUs)
//   --device cpu|cuda    the backend the model runs on (default cpu)
//   --kv-dtype bf16|f32  the KV cache's element type (default bf16, as serve)
//   --lora-dtype bf16|f32 the adapter's A / B element type (default bf16, as serve)
//   --matmul q8|exact    CPU matmul mode (bk_cpu_set_matmul; default q8:
//                        int8 dot products; ignored with --device cuda)
//   --lm-head bf16|q8    logits through the lm_head as stored or a Q8 copy
//                        (model_opts.lm_head_q8; default LM_HEAD_DEFAULT;
//                        q8 needs --device cpu)
//   --stats              one line of timing to stderr at the end
//
// Stop ids: config.json's and generation_config.json's eos_token_id, and
// the tokenizer's eos_token. The stop token itself is not printed; special
// tokens are not printed. A newline follows the generated text.
#ifndef TESSERA_GENERATE_H
#define TESSERA_GENERATE_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "model.h"

// --lm-head's default: the Q8 copy on the cpu (its logits stay within q8
// mode's stated error, tests/test_model.c, and it halves the bytes a decode
// step reads; bench/RESULTS.md), the lm_head as stored on cuda.
#define LM_HEAD_DEFAULT_Q8 1
#define LM_HEAD_DEFAULT "q8 on the cpu, bf16 on cuda"

typedef struct generate_opts {
    const char *model;
    const char *adapter;       // NULL = base model
    const char *prompt;
    const char *system;        // NULL = none
    const char *chat_template; // NULL = detect from tokenizer_config.json
    int raw;
    int max_tokens;
    float temperature, top_p;
    int top_k;
    uint64_t seed;
    model_load_quant quant;
    int threads;               // 0 = default
    const char *device;        // "cpu" (default) or "cuda"
    const char *kv_dtype;      // "bf16" (default) or "f32"
    const char *lora_dtype;    // "bf16" (default) or "f32"
    const char *matmul;        // "q8" (default) or "exact"; the CPU backend only
    const char *lm_head;       // "bf16" or "q8"; NULL: the device's default
    int stats;
} generate_opts;

generate_opts generate_opts_default(void);

// The matmul mode and lm_head serve's --matmul and --lm-head choose
// (--generate and the server alike): sets the CPU matmul mode when device
// is "cpu" (a cuda device has one mode), and mo->lm_head_q8. lm_head NULL
// means the default: q8 on the cpu when LM_HEAD_DEFAULT_Q8, else as stored.
void generate_apply_matmul(const char *device, const char *matmul, const char *lm_head, model_opts *mo);

// Parses the options above from argv[1..argc) into o (which holds the
// defaults); argv[0] is skipped, so serve's main passes argv + 1, whose
// first element is "--generate". Returns 0, 1 when --help / -h was given
// (print generate_usage), or -1 + err naming the option.
int generate_parse_args(int argc, char **argv, generate_opts *o, err_t *err);

// The usage line and one line per option with its default (core/opts).
void generate_usage(FILE *f);

// Runs the generation, text to stdout. 0, or -1 + err.
int generate_run(const generate_opts *o, err_t *err);

#endif
