// access: which model names a key may see and use. See access.h.
#include "access.h"

#include <string.h>

// A fine-tuned model is its job's tenant's alone, whatever the globs say.
static int adapter_allowed(const access_ctx *a, const tn_tenant *tn, const char *name) {
    if (ftjob_is_ft_name(name)) {
        const char *owner = a->ftjobs ? ftjob_model_owner(a->ftjobs, name) : NULL;
        return owner && strcmp(owner, tn->name) == 0;
    }
    return tn_allows(tn, name);
}

int access_model(const access_ctx *a, const tn_tenant *tn, const char *id, const reg_entry **entry) {
    *entry = NULL;
    if (strcmp(id, a->base_id) == 0) return tn_allows_base(tn);
    const reg_entry *e = a->adapters ? reg_set_find(a->adapters, id) : NULL;
    if (!e || !adapter_allowed(a, tn, id)) return 0;
    *entry = e;
    return 1;
}

int access_not_found(api_error *e, const char *id, const char *param) {
    return api_err_set(e, 404, "invalid_request_error", param, "model_not_found",
                       "The model '%s' does not exist or you do not have access to it.", id);
}
