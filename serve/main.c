// serve: tessera's server program. Today it offers --inspect only; the
// OpenAI-compatible HTTP server comes with the engine (see DESIGN.md).
#include <stdio.h>
#include <string.h>

#include "inspect.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: serve --inspect --model DIR [--adapter DIR]... [--prompt TEXT] [--chat-template NAME]\n"
            "\n"
            "  --inspect         read the model folder (and adapters) as the server will and print\n"
            "                    config, weights, tokenizer, chat template, the tokenized prompt\n"
            "  --model DIR       Hugging Face model folder (config.json, *.safetensors, tokenizer.json)\n"
            "  --adapter DIR     PEFT adapter folder (adapter_config.json, adapter_model.safetensors)\n"
            "  --prompt TEXT     a user message to render with the chat template and tokenize\n"
            "  --chat-template N override the detected family: chatml, qwen2, qwen2.5, qwen3, llama3, ...\n"
            "\n"
            "The HTTP server is not built yet: this binary only inspects.\n");
}

int main(int argc, char **argv) {
    inspect_opts o = {0};
    int inspect = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--inspect") == 0) {
            inspect = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "error serve: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--model") == 0) o.model = v;
        else if (strcmp(a, "--prompt") == 0) o.prompt = v;
        else if (strcmp(a, "--chat-template") == 0) o.chat_template = v;
        else if (strcmp(a, "--adapter") == 0) {
            if (o.n_adapters == INSPECT_MAX_ADAPTERS) {
                fprintf(stderr, "error serve: at most %d --adapter\n", INSPECT_MAX_ADAPTERS);
                return 2;
            }
            o.adapters[o.n_adapters++] = v;
        } else {
            fprintf(stderr, "error serve: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!inspect || !o.model) {
        usage(stderr);
        return 2;
    }
    err_t err = {{0}};
    if (inspect_run(&o, &err) != 0) {
        fprintf(stderr, "error serve: %s\n", err.msg);
        return 1;
    }
    return 0;
}
