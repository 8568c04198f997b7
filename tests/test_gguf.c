// gguf writer/reader: a small model-shaped file written by the writer has
// the byte layout of the GGUF spec (checked on the raw bytes, not only
// through our reader), reads back key for key and tensor for tensor with
// every offset aligned; bad writes are refused naming the key or tensor;
// corrupt files (every truncation, a bad magic, version, offset, alignment,
// a nested array, a duplicate key) are refused naming the file.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/gguf.h"
#include "../core/util.h"
#include "check.h"

static char tmpdir[] = "/tmp/tessera-gguf-XXXXXX";

static float norm[3] = {1.0f, 0.5f, -2.0f};
static uint16_t embd[5 * 3]; // bf16 [vocab 5, hidden 3] -> ne {3, 5}
static uint16_t half[7];     // f16, 14 bytes: the next tensor needs padding

static const char *const toks[] = {"a", "b", "Ġthe", "<|im_end|>", ""};
static const int32_t types[] = {1, 1, 1, 3, 5};

static gguf_writer *tiny_model(void) {
    gguf_writer *w = gguf_writer_new();
    for (int i = 0; i < 15; i++) embd[i] = util_f32_to_bf16((float)i - 7.0f);
    for (int i = 0; i < 7; i++) half[i] = util_f32_to_f16((float)i / 4);
    gguf_writer_str(w, "general.architecture", "qwen2");
    gguf_writer_u32(w, "qwen2.block_count", 1);
    gguf_writer_i32(w, "test.negative", -42);
    gguf_writer_f32(w, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
    gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", 0);
    gguf_writer_arr_str(w, "tokenizer.ggml.tokens", toks, 5);
    gguf_writer_arr_i32(w, "tokenizer.ggml.token_type", types, 5);
    gguf_writer_tensor(w, "output_norm.weight", GGUF_F32, 1, (int64_t[]){3}, norm);
    gguf_writer_tensor(w, "blk.0.half", GGUF_F16, 1, (int64_t[]){7}, half);
    gguf_writer_tensor(w, "token_embd.weight", GGUF_BF16, 2, (int64_t[]){3, 5}, embd);
    return w;
}

static void *read_all(const char *path, size_t *len) {
    err_t err = {0};
    void *p = util_read_file(path, len, &err);
    CHECK(p, "%s", err.msg);
    return p;
}

// The spec's layout, read by hand: magic, version, counts, then the first key.
static void check_raw_header(const uint8_t *b, size_t len) {
    uint32_t version;
    uint64_t nt, nkv, klen;
    CHECK(len > 64 && memcmp(b, "GGUF", 4) == 0, "magic");
    memcpy(&version, b + 4, 4);
    memcpy(&nt, b + 8, 8);
    memcpy(&nkv, b + 16, 8);
    memcpy(&klen, b + 24, 8);
    CHECK(version == 3 && nt == 3 && nkv == 7, "version %u tensors %llu kv %llu", version, (unsigned long long)nt,
          (unsigned long long)nkv);
    CHECK(klen == strlen("general.architecture") && memcmp(b + 32, "general.architecture", klen) == 0);
    uint32_t type;
    memcpy(&type, b + 32 + klen, 4);
    CHECK(type == GGUF_T_STR, "first value type %u", type);
}

static void check_kvs(const gguf_file *f) {
    const gguf_kv *kv = gguf_find_kv(f, "general.architecture");
    CHECK(kv && kv->type == GGUF_T_STR && strcmp(kv->str, "qwen2") == 0);
    kv = gguf_find_kv(f, "qwen2.block_count");
    CHECK(kv && kv->type == GGUF_T_U32 && kv->num.u == 1);
    kv = gguf_find_kv(f, "test.negative");
    CHECK(kv && kv->type == GGUF_T_I32 && kv->num.i == -42);
    kv = gguf_find_kv(f, "qwen2.attention.layer_norm_rms_epsilon");
    CHECK(kv && kv->type == GGUF_T_F32 && kv->num.f == (double)1e-6f);
    kv = gguf_find_kv(f, "tokenizer.ggml.add_bos_token");
    CHECK(kv && kv->type == GGUF_T_BOOL && kv->num.u == 0);
    kv = gguf_find_kv(f, "tokenizer.ggml.tokens");
    CHECK(kv && kv->type == GGUF_T_ARR && kv->arr_type == GGUF_T_STR && kv->n == 5);
    for (int i = 0; kv && i < 5; i++) CHECK(strcmp(kv->strs[i], toks[i]) == 0, "token %d", i);
    kv = gguf_find_kv(f, "tokenizer.ggml.token_type");
    CHECK(kv && kv->arr_type == GGUF_T_I32 && kv->n == 5 && memcmp(kv->arr, types, sizeof types) == 0);
    CHECK(gguf_find_kv(f, "absent") == NULL);
}

static void check_tensors(const gguf_file *f) {
    CHECK(f->alignment == GGUF_ALIGNMENT && f->data_offset % GGUF_ALIGNMENT == 0, "data at %llu",
          (unsigned long long)f->data_offset);
    for (int64_t i = 0; i < f->n_tensors; i++)
        CHECK(f->tensors[i].offset % GGUF_ALIGNMENT == 0, "%s at %llu", f->tensors[i].name,
              (unsigned long long)f->tensors[i].offset);
    const gguf_tensor *t = gguf_find_tensor(f, "output_norm.weight");
    CHECK(t && t->type == GGUF_F32 && t->ndim == 1 && t->ne[0] == 3 && t->offset == 0 && t->nbytes == 12);
    if (t) CHECK(memcmp(t->data, norm, sizeof norm) == 0);
    t = gguf_find_tensor(f, "blk.0.half");
    CHECK(t && t->type == GGUF_F16 && t->offset == 32 && t->nbytes == 14);
    if (t) CHECK(memcmp(t->data, half, sizeof half) == 0);
    t = gguf_find_tensor(f, "token_embd.weight");
    CHECK(t && t->type == GGUF_BF16 && t->ndim == 2 && t->ne[0] == 3 && t->ne[1] == 5 && t->offset == 64);
    if (t) CHECK(memcmp(t->data, embd, sizeof embd) == 0);
    if (t) CHECK((const uint8_t *)t->data - (const uint8_t *)f->tensors[0].data == 64);
    CHECK(f->size == f->data_offset + 64 + 30, // no padding after the last tensor
          "size %zu, data at %llu", f->size, (unsigned long long)f->data_offset);
}

static void test_round_trip(void) {
    err_t err = {0};
    char *path = util_path_join(tmpdir, "tiny.gguf");
    gguf_writer *w = tiny_model();
    CHECK(gguf_writer_n_tensors(w) == 3);
    CHECK(gguf_writer_write(w, path, &err) == 0, "%s", err.msg);
    gguf_writer_free(w);
    size_t len = 0;
    uint8_t *raw = read_all(path, &len);
    if (raw) check_raw_header(raw, len);
    gguf_file *f = gguf_open(path, &err);
    CHECK(f, "%s", err.msg);
    if (f) {
        CHECK(f->version == 3 && f->n_kv == 7 && f->n_tensors == 3 && f->size == len);
        check_kvs(f);
        check_tensors(f);
        gguf_close(f);
    }
    free(raw);
    free(path);
}

static void expect_write_error(gguf_writer *w, const char *needle) {
    err_t err = {0};
    char *path = util_path_join(tmpdir, "bad.gguf");
    CHECK(gguf_writer_write(w, path, &err) < 0 && strstr(err.msg, needle), "got: %s", err.msg);
    CHECK(access(path, F_OK) != 0, "a refused write left %s", path);
    gguf_writer_free(w);
    free(path);
}

static void test_writer_refuses(void) {
    gguf_writer *w = tiny_model();
    gguf_writer_u32(w, "qwen2.block_count", 2);
    expect_write_error(w, "qwen2.block_count: duplicate key");
    w = tiny_model();
    gguf_writer_tensor(w, "token_embd.weight", GGUF_F32, 1, (int64_t[]){3}, norm);
    expect_write_error(w, "token_embd.weight: duplicate tensor");
    w = tiny_model();
    gguf_writer_tensor(w, "five_d", GGUF_F32, 5, (int64_t[]){1, 1, 1, 1, 3}, norm);
    expect_write_error(w, "five_d: expected 1 to 4 dimensions");
    w = tiny_model();
    gguf_writer_tensor(w, "quant", GGUF_Q4_0, 1, (int64_t[]){32}, norm);
    expect_write_error(w, "quant: the writer takes");
}

static void expect_open_error(const uint8_t *b, size_t len, const char *needle) {
    err_t err = {0};
    gguf_file *f = gguf_open_memory(b, len, "corrupt.gguf", &err);
    CHECK(!f && strstr(err.msg, "corrupt.gguf") && strstr(err.msg, needle), "want \"%s\", got: %s", needle, err.msg);
    gguf_close(f);
}

// Byte position of a tensor info's offset field: after its name, in the file.
static size_t offset_field(const uint8_t *b, size_t len, const char *name) {
    for (size_t i = 0; i + strlen(name) < len; i++)
        if (memcmp(b + i, name, strlen(name)) == 0 && b[i - 8] == strlen(name)) {
            uint32_t nd;
            memcpy(&nd, b + i + strlen(name), 4);
            return i + strlen(name) + 4 + 8 * nd + 4;
        }
    return 0;
}

static void test_reader_refuses(void) {
    char *path = util_path_join(tmpdir, "tiny.gguf");
    size_t len = 0;
    uint8_t *good = read_all(path, &len), *b = malloc(len);
    if (!good || !b) goto done;
    // Every truncation point fails cleanly (or, past the last tensor's
    // bytes, only the padding is missing and the file still reads).
    int refused = 0;
    for (size_t n = 0; n < len; n++) {
        err_t err = {0};
        gguf_file *f = gguf_open_memory(good, n, "cut.gguf", &err);
        refused += f == NULL;
        CHECK(f || strstr(err.msg, "cut.gguf"), "cut at %zu: %s", n, err.msg);
        gguf_close(f);
    }
    CHECK(refused >= (int)len - 32, "%d of %zu truncations refused", refused, len);
    memcpy(b, good, len);
    b[0] = 'X';
    expect_open_error(b, len, "no \"GGUF\" magic");
    memcpy(b, good, len);
    b[4] = 9;
    expect_open_error(b, len, "version 9");
    memcpy(b, good, len);
    size_t at = offset_field(b, len, "blk.0.half");
    CHECK(at > 0);
    b[at] = 33;
    expect_open_error(b, len, "blk.0.half: offset 33 is not a multiple");
    memcpy(b, good, len);
    b[at] = 0;
    b[at + 1] = 1; // 256: past the end
    expect_open_error(b, len, "blk.0.half: data");
done:
    free(good);
    free(b);
    free(path);
}

static void test_reader_refuses_values(void) {
    err_t err = {0};
    char *path = util_path_join(tmpdir, "kv.gguf");
    gguf_writer *w = gguf_writer_new();
    gguf_writer_u32(w, "general.alignment", 24);
    CHECK(gguf_writer_write(w, path, &err) == 0, "%s", err.msg);
    gguf_writer_free(w);
    size_t len = 0;
    uint8_t *b = read_all(path, &len);
    if (b) expect_open_error(b, len, "general.alignment: expected a power of two");
    free(b);
    w = gguf_writer_new();
    gguf_writer_arr_i32(w, "nested", (int32_t[]){1}, 1);
    gguf_writer_str(w, "dup", "x");
    CHECK(gguf_writer_write(w, path, &err) == 0, "%s", err.msg);
    gguf_writer_free(w);
    b = read_all(path, &len);
    if (b) {
        memcpy(b + 24 + 8 + 6 + 4, &(uint32_t){GGUF_T_ARR}, 4); // the element type of "nested"
        expect_open_error(b, len, "nested: array of type 9");
    }
    free(b);
    w = gguf_writer_new();
    gguf_writer_u32(w, "ab", 1);
    gguf_writer_u32(w, "cd", 2);
    CHECK(gguf_writer_write(w, path, &err) == 0, "%s", err.msg);
    gguf_writer_free(w);
    b = read_all(path, &len);
    if (b) {
        memcpy(b + 24 + 18 + 8, "ab", 2); // the second key (the first takes 8 + 2 + 4 + 4 bytes)
        expect_open_error(b, len, "duplicate key ab");
    }
    free(b);
    free(path);
}

int main(void) {
    if (!mkdtemp(tmpdir)) return perror("mkdtemp"), 1;
    test_round_trip();
    test_writer_refuses();
    test_reader_refuses();
    test_reader_refuses_values();
    util_rm_rf(tmpdir);
    return check_finish("test_gguf");
}
