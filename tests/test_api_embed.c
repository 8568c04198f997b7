// test_api_embed: POST /v1/embeddings' body (api_parse_embeddings): each
// input shape OpenAI accepts, the options, and a 400 naming the field for
// every bad one.
#include <stdio.h>
#include <string.h>

#include "../serve/api.h"
#include "check.h"

static void bad(const char *body, const char *param, const char *part) {
    api_embed_request r;
    api_error e = {0};
    CHECK(api_parse_embeddings(body, strlen(body), &r, &e) == -1, "%s", body);
    CHECK(e.status == 400, "%s: status %d", body, e.status);
    CHECK(!strcmp(e.param, param), "%s: param '%s', want '%s'", body, e.param, param);
    CHECK(strstr(e.message, part) != NULL, "%s: message '%s' lacks '%s'", body, e.message, part);
    CHECK(r.inputs == NULL && r.model == NULL);
}

static void test_shapes(void) {
    api_embed_request r;
    api_error e = {0};
    const char *b1 = "{\"model\":\"m\",\"input\":\"hello\",\"user\":\"u\"}";
    CHECK(api_parse_embeddings(b1, strlen(b1), &r, &e) == 0, "%s", e.message);
    CHECK(r.n_inputs == 1 && !strcmp(r.inputs[0].text, "hello") && !r.base64 && r.dimensions == 0);
    CHECK(!strcmp(r.model, "m"));
    api_embed_request_free(&r);
    const char *b2 = "{\"model\":\"m\",\"input\":[\"a\",\"b\",[1,2]],\"encoding_format\":\"base64\",\"dimensions\":8}";
    CHECK(api_parse_embeddings(b2, strlen(b2), &r, &e) == 0, "%s", e.message);
    CHECK(r.n_inputs == 3 && !strcmp(r.inputs[1].text, "b") && r.inputs[2].n_ids == 2 && r.inputs[2].ids[1] == 2);
    CHECK(r.base64 == 1 && r.dimensions == 8);
    api_embed_request_free(&r);
    const char *b3 = "{\"model\":\"m\",\"input\":[5,6,7],\"encoding_format\":\"float\",\"dimensions\":null}";
    CHECK(api_parse_embeddings(b3, strlen(b3), &r, &e) == 0, "%s", e.message);
    CHECK(r.n_inputs == 1 && r.inputs[0].n_ids == 3 && r.inputs[0].ids[0] == 5 && r.inputs[0].text == NULL);
    api_embed_request_free(&r);
    const char *b4 = "{\"model\":\"m\",\"input\":[[1],[2,3]]}";
    CHECK(api_parse_embeddings(b4, strlen(b4), &r, &e) == 0, "%s", e.message);
    CHECK(r.n_inputs == 2 && r.inputs[1].n_ids == 2);
    api_embed_request_free(&r);
}

static void test_bad(void) {
    bad("{\"input\":\"x\"}", "model", "model");
    bad("{\"model\":1,\"input\":\"x\"}", "model", "a string");
    bad("{\"model\":\"m\"}", "input", "Missing");
    bad("{\"model\":\"m\",\"input\":\"\"}", "input", "empty string");
    bad("{\"model\":\"m\",\"input\":[]}", "input", "empty array");
    bad("{\"model\":\"m\",\"input\":[\"a\",\"\"]}", "input[1]", "empty string");
    bad("{\"model\":\"m\",\"input\":[\"a\",[]]}", "input[1]", "empty array");
    bad("{\"model\":\"m\",\"input\":[[1,-2]]}", "input[0][1]", "token id");
    bad("{\"model\":\"m\",\"input\":[1,2.5]}", "input[1]", "token id");
    bad("{\"model\":\"m\",\"input\":[\"a\",3]}", "input[1]", "a string or an array of token ids");
    bad("{\"model\":\"m\",\"input\":{}}", "input", "a string or an array");
    bad("{\"model\":\"m\",\"input\":\"x\",\"encoding_format\":\"int8\"}", "encoding_format", "'float' or 'base64'");
    bad("{\"model\":\"m\",\"input\":\"x\",\"encoding_format\":1}", "encoding_format", "a string");
    bad("{\"model\":\"m\",\"input\":\"x\",\"dimensions\":0}", "dimensions", "at least 1");
    bad("{\"model\":\"m\",\"input\":\"x\",\"dimensions\":1.5}", "dimensions", "an integer");
    bad("[1]", "", "JSON object");
    char big[1024] = "{\"model\":\"m\",\"input\":[";
    for (int i = 0; i < 65; i++) strcat(big, i ? ",\"a\"" : "\"a\"");
    strcat(big, "]}");
    bad(big, "input", "at most 64");
}

int main(void) {
    test_shapes();
    test_bad();
    return check_finish("test_api_embed");
}
