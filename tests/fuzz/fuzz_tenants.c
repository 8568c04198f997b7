// fuzz_tenants: the tenants file (serve/tenants.c tn_parse). The input's
// first line is an Authorization header value, the rest the file. A table
// that parses resolves that header, and the tenant it finds is asked about a
// few adapter names and the base model.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../serve/tenants.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t n = 0;
    while (n < size && data[n] != '\n') n++;
    if (n > 200) return 0;
    char auth[201];
    memcpy(auth, data, n);
    auth[n] = 0;
    size_t len = n < size ? size - n - 1 : 0;
    char *json = malloc(len ? len : 1);
    if (!json) return 0;
    if (len) memcpy(json, data + n + 1, len);

    err_t e = {{0}};
    tn_table *t = tn_parse(json, len, "tenants.json", &e);
    if (t) {
        const tn_tenant *who = NULL;
        if (tn_auth(t, auth, &who) == TN_AUTH_OK) {
            if (!who) abort();
            (void)tn_allows(who, "acme-bot");
            (void)tn_allows(who, auth);
            (void)tn_allows_base(who);
        }
        (void)tn_count(t);
        tn_free(t);
    } else if (!e.msg[0]) {
        abort();
    }
    char masked[64];
    tn_mask_key(auth, masked, sizeof masked);
    free(json);
    return 0;
}
