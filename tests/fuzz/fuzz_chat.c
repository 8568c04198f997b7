// fuzz_chat: the chat renderer (core/chat.c) on message lists made from
// bytes, then chat_encode with the real Qwen3 tokenizer. Input: byte 0 picks
// the family, byte 1 the options; then messages separated by 0x1e, each a
// role byte (system, user, assistant, tool, or an unknown role), content,
// and after a 0x1f a reasoning text. The rendered segments must cover the
// text exactly, in order.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "fuzz_tok.h"

#define MAX_MSGS 32

static tok *T;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    T = fuzz_tok_open();
    return 0;
}

static const char *const roles[] = {"system", "user", "assistant", "tool", "ipython", ""};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 1 << 16) return 0;
    chat_family f = (chat_family)(data[0] % CHAT_NFAMILIES);
    chat_opts o = {.add_generation_prompt = data[1] & 1,
                   .enable_thinking = (int)((data[1] >> 1) % 3) - 1,
                   .bos_token = (data[1] & 8) ? "" : NULL};
    // A NUL-terminated copy cut into messages in place.
    size_t len = size - 2;
    char *buf = malloc(len + 1);
    if (!buf) return 0;
    memcpy(buf, data + 2, len);
    buf[len] = 0;
    chat_msg m[MAX_MSGS];
    int n = 0;
    char *p = buf, *end = buf + len;
    while (p < end && n < MAX_MSGS) {
        char *stop = memchr(p, 0x1e, (size_t)(end - p));
        if (!stop) stop = end;
        *stop = 0;
        m[n].role = roles[(unsigned char)*p % (sizeof roles / sizeof *roles)];
        char *content = p < stop ? p + 1 : stop;
        char *sep = strchr(content, 0x1f);
        m[n].reasoning = NULL;
        if (sep) {
            *sep = 0;
            m[n].reasoning = sep + 1;
        }
        m[n].content = content;
        n++;
        p = stop + 1;
    }

    err_t e = {{0}};
    chat_prompt *pr = chat_render_segments(f, m, n, &o, &e);
    if (pr) {
        size_t at = 0;
        for (int i = 0; i < pr->n_segs; i++) {
            if (pr->segs[i].start != at || pr->segs[i].end <= pr->segs[i].start) abort();
            at = pr->segs[i].end;
        }
        if (at != pr->len) abort();
        size_t nid = 0;
        uint8_t *trained = NULL;
        err_t e2 = {{0}};
        int32_t *ids = chat_encode(T, pr, &nid, &trained, &e2);
        free(ids);
        free(trained);
        chat_prompt_free(pr);
    } else if (!e.msg[0]) {
        abort();
    }
    free(buf);
    return 0;
}
