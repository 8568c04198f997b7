// fuzz_adapter_config: adapter_config.json (core/adapter.c
// lora_config_parse), the PEFT config an adapter folder brings. A config
// that parses is asked what the loader asks (targets, rank, alpha, scale per
// module and layer) and written back out.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"

static const char *const modules[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = malloc(size ? size : 1);
    if (!json) return 0;
    memcpy(json, data, size);
    lora_config c;
    err_t e = {{0}};
    if (lora_config_parse(json, size, &c, &e) == 0) {
        for (size_t m = 0; m < sizeof modules / sizeof *modules; m++) {
            for (int layer = 0; layer < 3; layer++) (void)lora_config_targets(&c, modules[m], layer);
            (void)lora_config_rank(&c, modules[m]);
            (void)lora_config_alpha(&c, modules[m]);
            (void)lora_config_scale(&c, modules[m]);
        }
        char *out = lora_config_to_json(&c);
        free(out);
    } else if (!e.msg[0]) {
        abort();
    }
    lora_config_free(&c);
    free(json);
    return 0;
}
