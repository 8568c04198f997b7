// safetensors reader/writer: files written by the Python safetensors
// library (the oracle fixtures) read correctly; our writer round-trips
// every dtype; sharded sets resolve; each kind of corruption is refused with
// a message naming the file and the tensor.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/safetensors.h"
#include "../core/util.h"
#include "check.h"

#define ORACLE "tests/fixtures/oracle"

static char tmpdir[] = "/tmp/tessera-sft-XXXXXX";

static char *tmp_path(const char *name) { return util_path_join(tmpdir, name); }

static void test_reads_python_written_file(void) {
    err_t err = {0};
    sft *s = sft_open(ORACLE "/llama3/model/model.safetensors", &err);
    CHECK(s, "%s", err.msg);
    if (!s) return;
    // 2 layers x 9 tensors + embed + norm + lm_head
    CHECK(sft_count(s) == 21, "count %d", sft_count(s));
    const sft_tensor *t = sft_find(s, "model.embed_tokens.weight");
    CHECK(t && t->dtype == SFT_BF16 && t->ndim == 2 && t->shape[0] == 512 && t->shape[1] == 64);
    const sft_tensor *q = sft_find(s, "model.layers.1.self_attn.q_proj.weight");
    CHECK(q && q->shape[0] == 64 && q->shape[1] == 64 && q->nbytes == 64 * 64 * 2);
    CHECK(sft_find(s, "model.layers.2.self_attn.q_proj.weight") == NULL);
    // Cross-check against a second file the oracle wrote: the NF4 round trip
    // of the same weight, whose dequantised values lie within half the
    // widest NF4 code gap (-1 to -0.696: 0.1519) times the block's absmax of the weight.
    sft *nf = sft_open(ORACLE "/llama3/nf4_weights.safetensors", &err);
    const sft_tensor *dq = nf ? sft_find(nf, "model.layers.1.self_attn.q_proj.dequant") : NULL;
    const sft_tensor *am = nf ? sft_find(nf, "model.layers.1.self_attn.q_proj.absmax") : NULL;
    CHECK(q && dq && am && dq->numel == q->numel && am->numel == q->numel / 64, "%s", err.msg);
    if (q && dq && am && dq->numel == q->numel && am->numel == q->numel / 64) {
        float *w = malloc(sizeof(float) * (size_t)q->numel), *d = malloc(sizeof(float) * (size_t)q->numel);
        float *a = malloc(sizeof(float) * (size_t)am->numel);
        CHECK(sft_to_f32(q, w, &err) == 0 && sft_to_f32(dq, d, &err) == 0 && sft_to_f32(am, a, &err) == 0);
        int bad = 0;
        double ss = 0;
        for (int64_t i = 0; i < q->numel; i++) {
            bad += !(fabsf(w[i] - d[i]) <= 0.1520f * a[i / 64] + 1e-7f);
            ss += (double)w[i] * w[i];
        }
        CHECK(bad == 0, "%d weights far from their NF4 round trip", bad);
        CHECK(ss > 0);
        free(w);
        free(d);
        free(a);
    }
    sft_close(nf);
    // Tensors are listed by data offset.
    for (int i = 1; i < sft_count(s); i++)
        CHECK((const char *)sft_at(s, i)->data >= (const char *)sft_at(s, i - 1)->data + sft_at(s, i - 1)->nbytes);
    sft_close(s);

    // A folder resolves to its model.safetensors.
    s = sft_open(ORACLE "/qwen3/model", &err);
    CHECK(s && sft_find(s, "model.layers.0.self_attn.q_norm.weight"), "%s", err.msg);
    CHECK(s && !sft_find(s, "lm_head.weight"), "qwen3 fixture has tied embeddings");
    sft_close(s);

    // I64 tensors (token ids) from the logits fixture.
    s = sft_open(ORACLE "/llama3/base_logits.safetensors", &err);
    CHECK(s, "%s", err.msg);
    t = s ? sft_find(s, "prompt0") : NULL;
    CHECK(t && t->dtype == SFT_I64 && t->ndim == 1 && t->numel > 0);
    CHECK(s && sft_to_f32(t, NULL, &err) != 0 && strstr(err.msg, "prompt0") && strstr(err.msg, "I64"), "%s", err.msg);
    sft_close(s);
}

static void test_writer_round_trip(void) {
    err_t err = {0};
    float f32[6] = {1, -2, 3.5f, 0, 1e-8f, -7};
    uint16_t bf16[4] = {util_f32_to_bf16(1.5f), util_f32_to_bf16(-0.25f), 0, util_f32_to_bf16(3e5f)};
    uint16_t f16[3] = {util_f32_to_f16(1.0f), util_f32_to_f16(-65504.0f), util_f32_to_f16(0.000061035156f)};
    int64_t i64[2] = {INT64_MIN, 151643};
    int32_t i32[1] = {-5};
    uint8_t u8[5] = {0, 1, 2, 254, 255};
    int8_t i8[2] = {-128, 127};
    double f64[1] = {0.125};
    sft_writer *w = sft_writer_new();
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s2[1] = {2}, s11[2] = {1, 1}, s5[1] = {5}, s0[2] = {0, 7};
    CHECK(sft_writer_add(w, "b.f32", SFT_F32, 2, s23, f32, &err) == 0);
    CHECK(sft_writer_add(w, "a.bf16", SFT_BF16, 1, s4, bf16, &err) == 0);
    CHECK(sft_writer_add(w, "c.f16", SFT_F16, 1, s3, f16, &err) == 0);
    CHECK(sft_writer_add(w, "d.i64", SFT_I64, 1, s2, i64, &err) == 0);
    CHECK(sft_writer_add(w, "e.i32", SFT_I32, 2, s11, i32, &err) == 0);
    CHECK(sft_writer_add(w, "f.u8", SFT_U8, 1, s5, u8, &err) == 0);
    CHECK(sft_writer_add(w, "g.i8", SFT_I8, 1, s2, i8, &err) == 0);
    CHECK(sft_writer_add(w, "h.f64", SFT_F64, 0, NULL, f64, &err) == 0);
    CHECK(sft_writer_add(w, "i.empty", SFT_F32, 2, s0, f32, &err) == 0);
    CHECK(sft_writer_add(w, "b.f32", SFT_F32, 2, s23, f32, &err) != 0 && strstr(err.msg, "twice"));
    CHECK(sft_writer_metadata(w, "format", "pt", &err) == 0);
    char *path = tmp_path("rt.safetensors");
    CHECK(sft_writer_write(w, path, &err) == 0, "%s", err.msg);
    sft_writer_free(w);

    size_t len;
    char *raw = util_read_file(path, &len, &err);
    CHECK(raw != NULL);
    if (raw) {
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (uint8_t)raw[i];
        CHECK(hlen % 8 == 0, "header padded to 8 bytes: %llu", (unsigned long long)hlen);
        CHECK(strstr(raw + 8, "\"__metadata__\":{\"format\":\"pt\"}") != NULL);
        free(raw);
    }

    sft *s = sft_open(path, &err);
    CHECK(s, "%s", err.msg);
    if (s) {
        CHECK(sft_count(s) == 9);
        CHECK(sft_metadata(s, "format") && strcmp(sft_metadata(s, "format"), "pt") == 0);
        CHECK(sft_metadata(s, "missing") == NULL);
        const sft_tensor *t = sft_find(s, "b.f32");
        CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && memcmp(t->data, f32, sizeof f32) == 0);
        t = sft_find(s, "a.bf16");
        float out[6];
        CHECK(t && sft_to_f32(t, out, &err) == 0 && out[0] == 1.5f && out[1] == -0.25f && out[3] == 299008.0f,
              "bf16 %f %f %f", out[0], out[1], out[3]);
        t = sft_find(s, "c.f16");
        CHECK(t && sft_to_f32(t, out, &err) == 0 && out[0] == 1.0f && out[1] == -65504.0f &&
              out[2] == 0.000061035156f);
        t = sft_find(s, "d.i64");
        CHECK(t && memcmp(t->data, i64, sizeof i64) == 0);
        t = sft_find(s, "h.f64");
        CHECK(t && t->ndim == 0 && t->numel == 1 && sft_to_f32(t, out, &err) == 0 && out[0] == 0.125f);
        t = sft_find(s, "i.empty");
        CHECK(t && t->numel == 0 && t->nbytes == 0);
        t = sft_find(s, "f.u8");
        CHECK(t && memcmp(t->data, u8, 5) == 0);
        // Data of the 8-byte types is 8-aligned because the header is padded.
        CHECK(((uintptr_t)sft_find(s, "d.i64")->data) % 8 == 0);
        sft_close(s);
    }
    unlink(path);
    free(path);
}

// A file with no tensors (an adapter with nothing in it) is valid.
static void test_empty_file(void) {
    err_t err = {0};
    sft_writer *w = sft_writer_new();
    char *path = tmp_path("empty.safetensors");
    CHECK(sft_writer_write(w, path, &err) == 0, "%s", err.msg);
    sft_writer_free(w);
    sft *s = sft_open(path, &err);
    CHECK(s && sft_count(s) == 0 && sft_find(s, "x") == NULL && sft_at(s, 0) == NULL, "%s", err.msg);
    sft_close(s);
    unlink(path);
    free(path);
}

static void write_shard(const char *name, const char *tensor, float value) {
    err_t err = {0};
    float v[2] = {value, value};
    int64_t shape[1] = {2};
    sft_writer *w = sft_writer_new();
    sft_writer_add(w, tensor, SFT_F32, 1, shape, v, &err);
    char *p = tmp_path(name);
    CHECK(sft_writer_write(w, p, &err) == 0, "%s", err.msg);
    free(p);
    sft_writer_free(w);
}

static void write_text(const char *name, const char *text) {
    err_t err = {0};
    char *p = tmp_path(name);
    CHECK(util_write_file_atomic(p, text, strlen(text), &err) == 0, "%s", err.msg);
    free(p);
}

static void test_sharded(void) {
    err_t err = {0};
    write_shard("model-00001-of-00002.safetensors", "model.a", 1.0f);
    write_shard("model-00002-of-00002.safetensors", "model.b", 2.0f);
    write_text("model.safetensors.index.json",
               "{\"metadata\":{\"total_size\":16},\"weight_map\":{\"model.a\":\"model-00001-of-00002.safetensors\","
               "\"model.b\":\"model-00002-of-00002.safetensors\"}}");
    sft *s = sft_open(tmpdir, &err);
    CHECK(s, "%s", err.msg);
    if (s) {
        CHECK(sft_count(s) == 2);
        const sft_tensor *b = sft_find(s, "model.b");
        CHECK(b && ((const float *)b->data)[0] == 2.0f && strstr(b->file, "00002"));
        sft_close(s);
    }
    // The index names a tensor its shard does not hold.
    write_text("bad1.index.json", "{\"weight_map\":{\"model.a\":\"model-00002-of-00002.safetensors\"}}");
    char *p = tmp_path("bad1.index.json");
    s = sft_open(p, &err);
    CHECK(!s && strstr(err.msg, "model.a") && strstr(err.msg, "not found"), "%s", err.msg);
    free(p);
    // A shard path that escapes the folder.
    write_text("bad2.index.json", "{\"weight_map\":{\"model.a\":\"../etc/passwd\"}}");
    p = tmp_path("bad2.index.json");
    s = sft_open(p, &err);
    CHECK(!s && strstr(err.msg, "file name beside the index"), "%s", err.msg);
    free(p);
    // The same tensor in two shards.
    write_shard("dup.safetensors", "model.a", 3.0f);
    write_text("bad3.index.json",
               "{\"weight_map\":{\"model.a\":\"model-00001-of-00002.safetensors\",\"x\":\"dup.safetensors\"}}");
    p = tmp_path("bad3.index.json");
    s = sft_open(p, &err);
    CHECK(!s && strstr(err.msg, "model.a") && strstr(err.msg, "both"), "%s", err.msg);
    free(p);
    // A folder with neither file.
    char *empty = tmp_path("empty");
    mkdir(empty, 0755);
    s = sft_open(empty, &err);
    CHECK(!s && strstr(err.msg, "no model.safetensors"), "%s", err.msg);
    rmdir(empty);
    free(empty);
}

// Builds a file image: 8-byte length, the header text, then data_len bytes.
static uint8_t *image(const char *header, size_t data_len, size_t *len) {
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    uint8_t *b = calloc(1, *len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    return b;
}

static void expect_error(const char *header, size_t data_len, const char *want1, const char *want2) {
    err_t err = {0};
    size_t len;
    uint8_t *b = image(header, data_len, &len);
    sft *s = sft_open_memory(b, len, "bad.safetensors", &err);
    CHECK(!s, "accepted: %s", header);
    CHECK(strstr(err.msg, "bad.safetensors") && strstr(err.msg, want1) && (!want2 || strstr(err.msg, want2)),
          "header %s: message '%s' lacks '%s'/'%s'", header, err.msg, want1, want2 ? want2 : "");
    sft_close(s);
    free(b);
}

static void test_corrupt_headers(void) {
    const char *ok = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    err_t err = {0};
    size_t len;
    uint8_t *b = image(ok, 8, &len);
    sft *s = sft_open_memory(b, len, "ok", &err);
    CHECK(s && sft_count(s) == 1, "%s", err.msg);
    sft_close(s);
    // Truncated: the data runs past the end.
    s = sft_open_memory(b, len - 1, "bad.safetensors", &err);
    CHECK(!s && strstr(err.msg, "'w'") && strstr(err.msg, "truncated"), "%s", err.msg);
    // Header length beyond the file.
    s = sft_open_memory(b, 20, "bad.safetensors", &err);
    CHECK(!s && strstr(err.msg, "header length"), "%s", err.msg);
    s = sft_open_memory(b, 5, "bad.safetensors", &err);
    CHECK(!s && strstr(err.msg, "too short"), "%s", err.msg);
    b[7] = 0x40;
    s = sft_open_memory(b, len, "bad.safetensors", &err);
    CHECK(!s && strstr(err.msg, "out of bounds"), "%s", err.msg);
    free(b);
    // Any file's first 8 bytes are its header length: an error must not
    // echo them (here /etc/passwd's "root:x:0", as issue 12 saw).
    const char passwd[] = "root:x:0:0:root:/root:/bin/bash\n";
    s = sft_open_memory((const uint8_t *)passwd, sizeof passwd - 1, "passwd", &err);
    CHECK(!s && strstr(err.msg, "not a safetensors file") && !strstr(err.msg, "3475222254926655346"), "%s", err.msg);
    const uint8_t small[16] = {0xff, 0x00, 0x01}; // 65791: in bounds, past the end
    s = sft_open_memory(small, sizeof small, "small", &err);
    CHECK(!s && !strstr(err.msg, "65791"), "%s", err.msg);

    expect_error("{\"w\":{\"dtype\":\"F32\",", 8, "not valid JSON", NULL);
    expect_error("[1,2]", 0, "not a JSON object", NULL);
    expect_error("{\"w\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "'w'", "unsupported dtype");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "'w'", "needs 12 bytes");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "'w'", "shape[0]");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "'w'", "shape[0]");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "'w'", "end before begin");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "'w'", "data_offsets");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296]," "\"data_offsets\":[0,8]}}",
                 8, "'w'", "too large");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                 12, "'v'", "overlap");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "'w'", "gap");
    expect_error(ok, 16, "8 bytes of data after", NULL);
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 8, "'w'", "twice");
    expect_error("{\"__metadata__\":{\"a\":1}}", 0, "__metadata__", "not a string");
    expect_error("{\"w\":[1,2]}", 0, "'w'", "not an object");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "'w'",
                 "dimensions");
}

static void test_missing_file(void) {
    err_t err = {0};
    sft *s = sft_open("/nonexistent/x.safetensors", &err);
    CHECK(!s && strstr(err.msg, "/nonexistent/x.safetensors"), "%s", err.msg);
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    test_reads_python_written_file();
    test_writer_round_trip();
    test_empty_file();
    test_sharded();
    test_corrupt_headers();
    test_missing_file();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) return 1;
    return check_finish("test_safetensors");
}
