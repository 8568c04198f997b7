// fuzz_data: training data files (train/data.c data_load) in all three
// formats (OpenAI chat, Alpaca, ShareGPT: the format is detected from the
// first good line), rendered and tokenized with the real Qwen3 tokenizer.
// Byte 0 picks the chat family, strict mode and a short max_seq_len; the
// rest is written to a scratch file (data_load reads paths) and loaded.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../train/data.h"
#include "fuzz_tok.h"

static tok *T;
static char path[64];

static void cleanup(void) { unlink(path); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    T = fuzz_tok_open();
    snprintf(path, sizeof path, "/tmp/tessera-fuzz-data.%d.jsonl", (int)getpid());
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 1 << 16) return 0;
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    data_opts o = {.tok = T,
                   .family = (chat_family)(data[0] % CHAT_NFAMILIES),
                   .bos_token = NULL,
                   .max_seq_len = (data[0] & 0x80) ? 16 : 4096,
                   .strict = (data[0] >> 6) & 1,
                   .max_line_bytes = (data[0] & 0x20) ? 64 : 0};
    data_report rep;
    memset(&rep, 0, sizeof rep);
    err_t e = {{0}};
    data_set *ds = data_load(path, &o, &rep, &e);
    if (ds) {
        for (int i = 0; i < data_count(ds); i++) {
            const data_example *ex = data_get(ds, i);
            if (ex->n > o.max_seq_len || ex->n_trained > ex->n) abort();
        }
        data_report_stats(&rep, ds);
        data_free(ds);
    } else if (!e.msg[0]) {
        abort();
    }
    data_report_free(&rep);
    return 0;
}
