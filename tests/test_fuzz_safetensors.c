// Fuzz-style robustness: thousands of deterministic mutations of real
// safetensors images (a PEFT adapter written by Python's safetensors, and a
// file of every dtype written by ours) go through the reader under ASan.
// Every outcome must be a clean accept (with every tensor inside the
// buffer, fully readable) or a refusal with a message; never a crash.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/safetensors.h"
#include "../core/util.h"
#include "check.h"

#define ITERATIONS 100000

typedef struct buf {
    uint8_t *p;
    size_t len;
} buf;

static uint64_t get_hlen(const buf *b) {
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = h << 8 | b->p[i];
    return h;
}

static void set_hlen(buf *b, uint64_t h) {
    for (int i = 0; i < 8; i++) b->p[i] = (uint8_t)(h >> (8 * i));
}

static buf make_seed_ours(void) {
    static float f[12];
    static uint16_t h[6];
    static int64_t l[3];
    static uint8_t u[7];
    for (int i = 0; i < 12; i++) f[i] = (float)i - 3.5f;
    for (int i = 0; i < 6; i++) h[i] = util_f32_to_bf16((float)i);
    err_t err = {0};
    sft_writer *w = sft_writer_new();
    int64_t s34[2] = {3, 4}, s6[1] = {6}, s3[1] = {3}, s7[1] = {7};
    sft_writer_add(w, "model.layers.0.mlp.up_proj.weight", SFT_F32, 2, s34, f, &err);
    sft_writer_add(w, "model.norm.weight", SFT_BF16, 1, s6, h, &err);
    sft_writer_add(w, "ids", SFT_I64, 1, s3, l, &err);
    sft_writer_add(w, "mask", SFT_U8, 1, s7, u, &err);
    sft_writer_metadata(w, "format", "pt", &err);
    char path[] = "/tmp/tessera-fuzz-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    sft_writer_write(w, path, &err);
    sft_writer_free(w);
    buf b;
    b.p = (uint8_t *)util_read_file(path, &b.len, &err);
    unlink(path);
    return b;
}

static buf make_seed_file(const char *path) {
    err_t err = {0};
    buf b;
    b.p = (uint8_t *)util_read_file(path, &b.len, &err);
    CHECK(b.p != NULL, "%s", err.msg);
    return b;
}

static const char interesting[] = "\"{}[],:-.0123456789eE \\\x00\xff\x80";

// Returns a new mutated copy of seed (exact-size allocation so ASan sees
// any read past its end).
static buf mutate(const buf *seed, util_rng *r) {
    buf b = {malloc(seed->len + 64), seed->len};
    memcpy(b.p, seed->p, seed->len);
    uint64_t hlen = get_hlen(&b);
    size_t hend = (size_t)(8 + hlen < b.len ? 8 + hlen : b.len);
    int kind = (int)(util_rng_next(r) % 9);
    size_t at = 8 + (size_t)(util_rng_next(r) % (hend > 8 ? hend - 8 : 1));
    switch (kind) {
    case 0: // flip bits in the header
        for (int k = 0; k < 1 + (int)(util_rng_next(r) % 4); k++) {
            size_t i = 8 + (size_t)(util_rng_next(r) % (hend - 8));
            b.p[i] ^= (uint8_t)(1u << (util_rng_next(r) % 8));
        }
        break;
    case 1: // a structural character where it does not belong
        b.p[at] = (uint8_t)interesting[util_rng_next(r) % (sizeof interesting - 1)];
        break;
    case 2: // truncate anywhere
        b.len = (size_t)(util_rng_next(r) % (seed->len + 1));
        break;
    case 3: // a bad header length
        switch (util_rng_next(r) % 4) {
        case 0: set_hlen(&b, util_rng_next(r)); break;
        case 1: set_hlen(&b, hlen + (util_rng_next(r) % 17) - 8); break;
        case 2: set_hlen(&b, b.len - 8); break;
        default: set_hlen(&b, 0); break;
        }
        break;
    case 4: { // replace a digit run with a hostile number, keeping the length
        static const char *nums[] = {"9", "0", "-1", "1e9", "99999999999999999999", "1.5", "4294967296", "-0"};
        size_t i = at;
        while (i < hend && (b.p[i] < '0' || b.p[i] > '9')) i++;
        if (i >= hend) break;
        const char *n = nums[util_rng_next(r) % 8];
        for (size_t k = 0; n[k] && i + k < hend; k++) b.p[i + k] = (uint8_t)n[k];
        break;
    }
    case 5: // swap two header bytes
        if (hend > 9) {
            size_t j = 8 + (size_t)(util_rng_next(r) % (hend - 8));
            uint8_t t = b.p[at];
            b.p[at] = b.p[j];
            b.p[j] = t;
        }
        break;
    case 6: // delete a header byte and fix the length prefix, so the JSON parser goes deep
        if (hend > 9 && hend <= b.len) {
            memmove(b.p + at, b.p + at + 1, b.len - at - 1);
            b.len--;
            set_hlen(&b, hlen - 1);
        }
        break;
    case 7: // insert a byte and fix the length prefix
        memmove(b.p + at + 1, b.p + at, b.len - at);
        b.p[at] = (uint8_t)interesting[util_rng_next(r) % (sizeof interesting - 1)];
        b.len++;
        set_hlen(&b, hlen + 1);
        break;
    default: // flip a data byte: must always be accepted unchanged in structure
        if (b.len > hend) b.p[hend + (size_t)(util_rng_next(r) % (b.len - hend))] ^= 0xff;
        break;
    }
    uint8_t *exact = malloc(b.len ? b.len : 1);
    memcpy(exact, b.p, b.len);
    free(b.p);
    b.p = exact;
    return b;
}

// On acceptance, every tensor must lie inside the buffer and be readable.
static void check_accepted(const sft *s, const buf *b) {
    for (int i = 0; i < sft_count(s); i++) {
        const sft_tensor *t = sft_at(s, i);
        const uint8_t *d = t->data;
        CHECK(d >= b->p && d + t->nbytes <= b->p + b->len, "tensor %s outside the buffer", t->name);
        CHECK(t->nbytes == (size_t)t->numel * sft_dtype_size(t->dtype));
        CHECK(sft_find(s, t->name) == t);
        if (t->dtype == SFT_F32 || t->dtype == SFT_BF16 || t->dtype == SFT_F16 || t->dtype == SFT_F64) {
            if (t->numel > (1 << 20)) continue;
            float *out = malloc(sizeof(float) * (size_t)(t->numel + 1));
            err_t err = {0};
            CHECK(sft_to_f32(t, out, &err) == 0);
            free(out);
        }
    }
}

static void fuzz(const buf *seed, const char *label, uint64_t seed_value, int *accepted, int *refused) {
    util_rng r;
    util_rng_seed(&r, seed_value);
    for (int it = 0; it < ITERATIONS / 2; it++) {
        buf b = mutate(seed, &r);
        err_t err = {{0}};
        sft *s = sft_open_memory(b.p, b.len, label, &err);
        if (s) {
            (*accepted)++;
            check_accepted(s, &b);
            sft_close(s);
        } else {
            (*refused)++;
            CHECK(err.msg[0] != '\0' && strstr(err.msg, label), "iteration %d: empty or unnamed error '%s'", it,
                  err.msg);
        }
        free(b.p);
    }
}

// A few hundred truncations through the real file path (open + mmap).
static void fuzz_files(const buf *seed) {
    char path[] = "/tmp/tessera-fuzzf-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    for (size_t cut = 0; cut <= seed->len; cut += 1 + seed->len / 300) {
        err_t err = {{0}};
        CHECK(util_write_file_atomic(path, seed->p, cut, &err) == 0);
        sft *s = sft_open(path, &err);
        CHECK(cut == seed->len ? s != NULL : s == NULL, "cut %zu: %s", cut, err.msg);
        CHECK(s || strstr(err.msg, path), "cut %zu: %s", cut, err.msg);
        sft_close(s);
    }
    unlink(path);
}

int main(void) {
    buf ours = make_seed_ours();
    buf peft = make_seed_file("tests/fixtures/oracle/qwen2/adapters/c_rslora_r4/adapter_model.safetensors");
    if (!ours.p || !peft.p) return 1;
    err_t err = {{0}};
    sft *s = sft_open_memory(ours.p, ours.len, "seed", &err);
    CHECK(s && sft_count(s) == 4, "seed must parse: %s", err.msg);
    sft_close(s);
    s = sft_open_memory(peft.p, peft.len, "seed", &err);
    CHECK(s && sft_count(s) > 0, "seed must parse: %s", err.msg);
    sft_close(s);

    int accepted = 0, refused = 0;
    fuzz(&ours, "ours.safetensors", 1, &accepted, &refused);
    fuzz(&peft, "peft.safetensors", 2, &accepted, &refused);
    fuzz_files(&ours);
    printf("fuzz: %d mutations, %d accepted, %d refused with a message\n", accepted + refused, accepted, refused);
    // Both outcomes must occur, or the mutator is not reaching the parser.
    CHECK(accepted > 100 && refused > ITERATIONS / 2);
    free(ours.p);
    free(peft.p);
    return check_finish("test_fuzz_safetensors");
}
