// grammar_keys: which object keys can still be finished. A key is read
// through its object's key DFA; a prefix that only leads to properties the
// object already has (or to keys it refuses) would leave a sampling model
// with nothing to say at the closing quote. Per object node and key DFA
// state this file records what some completion of the key can still name,
// so the matcher refuses such a byte at once and the mask's lexeme cache
// (which knows DFA states, not which properties were seen) is used only
// where it cannot contain such a prefix.
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"

enum {
    KI_ANY = 1,     // some completion is a valid key that names no property
    KI_BAD = 2,     // some completion is a key the object refuses whatever was seen
    KI_ALL_ANY = 4, // every non-final state reachable from here has KI_ANY
};

// The value node a non-property key (pattern or additional) takes, as
// grammar_match.c: key_value decides it; -1 when refused.
static int32_t other_key_node(const gm_grammar *g, const js_node *n, uint64_t pats) {
    int32_t vn = -1;
    if (!pats) {
        vn = n->additional;
    } else {
        for (int j = 0; j < n->n_patterns && j < 64; j++) {
            if (!(pats >> j & 1)) continue;
            if (vn >= 0 && vn != n->pattern_nodes[j]) return -1;
            vn = n->pattern_nodes[j];
        }
    }
    return vn >= 0 && g->s->nodes[vn].kind != JS_NEVER ? vn : -1;
}

// The labels of accepting state s alone.
static void own_labels(const gm_grammar *g, const js_node *n, const rx_dfa *d, int32_t s, gm_keyinfo *ki) {
    if (!d->accept[s]) return;
    int32_t name = d->key_name ? d->key_name[s] : -1;
    if (name >= 0 && name < n->n_props) {
        if (g->s->nodes[n->props[name].node].kind == JS_NEVER) ki->flags[s] |= KI_BAD;
        else ki->names[(size_t)s * ki->words + (size_t)name / 64] |= (uint64_t)1 << (name % 64);
        return;
    }
    uint64_t pats = d->key_pats ? d->key_pats[s] : 0;
    ki->flags[s] |= other_key_node(g, n, pats) >= 0 ? KI_ANY : KI_BAD;
}

// Labels flow backwards along transitions until nothing changes (key DFAs
// are small and mostly acyclic: states come breadth first, so a backwards
// sweep settles in a pass or two).
static void propagate(const rx_dfa *d, gm_keyinfo *ki) {
    bool changed = true;
    while (changed) {
        changed = false;
        for (int32_t s = d->n_states - 1; s >= 0; s--) {
            uint64_t *ns = ki->names + (size_t)s * ki->words;
            for (int32_t c = 0; c < d->n_classes; c++) {
                int32_t t = d->next[(size_t)s * d->n_classes + c];
                if (t < 0 || t == s) continue;
                const uint64_t *nt = ki->names + (size_t)t * ki->words;
                for (size_t w = 0; w < ki->words; w++) {
                    if (nt[w] & ~ns[w]) changed = true;
                    ns[w] |= nt[w];
                }
                uint8_t add = ki->flags[t] & (KI_ANY | KI_BAD) & ~ki->flags[s];
                if (add) changed = true;
                ki->flags[s] |= add;
            }
        }
    }
}

// KI_ALL_ANY: start everywhere, drop it where a non-final state lacks
// KI_ANY, then from every state that reaches one without it.
static void all_any(const gm_grammar *g, int32_t dfa, const rx_dfa *d, gm_keyinfo *ki) {
    const uint8_t *has_out = g->info[dfa].has_out;
    for (int32_t s = 0; s < d->n_states; s++)
        if (!has_out[s] || (ki->flags[s] & KI_ANY)) ki->flags[s] |= KI_ALL_ANY;
    bool changed = true;
    while (changed) {
        changed = false;
        for (int32_t s = d->n_states - 1; s >= 0; s--) {
            if (!(ki->flags[s] & KI_ALL_ANY)) continue;
            for (int32_t c = 0; c < d->n_classes; c++) {
                int32_t t = d->next[(size_t)s * d->n_classes + c];
                if (t >= 0 && !(ki->flags[t] & KI_ALL_ANY)) {
                    ki->flags[s] &= (uint8_t)~KI_ALL_ANY;
                    changed = true;
                    break;
                }
            }
        }
    }
}

int gm_keys_init(gm_grammar *g, err_t *err) {
    const js_schema *s = g->s;
    g->keys = calloc((size_t)s->n_nodes, sizeof *g->keys);
    if (!g->keys) return err_set(err, "grammar: out of memory");
    for (int32_t i = 0; i < s->n_nodes; i++) {
        const js_node *n = &s->nodes[i];
        if (n->kind != JS_OBJECT || n->key_dfa < 0) continue;
        const rx_dfa *d = s->dfas[n->key_dfa];
        gm_keyinfo *ki = &g->keys[i];
        ki->words = ((size_t)n->n_props + 63) / 64;
        ki->names = calloc((size_t)d->n_states * ki->words + 1, sizeof *ki->names);
        ki->flags = calloc((size_t)d->n_states, 1);
        if (!ki->names || !ki->flags) return err_set(err, "grammar: out of memory");
        for (int32_t st = 0; st < d->n_states; st++) own_labels(g, n, d, st, ki);
        propagate(d, ki);
        all_any(g, n->key_dfa, d, ki);
    }
    return 0;
}

void gm_keys_free(gm_grammar *g) {
    for (int32_t i = 0; g->keys && i < g->s->n_nodes; i++) {
        free(g->keys[i].names);
        free(g->keys[i].flags);
    }
    free(g->keys);
}

bool gm_key_viable(const gm_grammar *g, const gm_frame *obj, int32_t state) {
    const gm_keyinfo *ki = &g->keys[obj->node];
    if (!ki->flags || (ki->flags[state] & KI_ANY)) return true; // no facts: the key's end decides
    const uint64_t *ns = ki->names + (size_t)state * ki->words;
    for (size_t w = 0; w < ki->words; w++) {
        uint64_t seen = obj->seen ? obj->seen[w] : 0;
        if (ns[w] & ~seen) return true;
    }
    return false;
}

bool gm_key_cacheable(const gm_grammar *g, const gm_frame *obj, int32_t state) {
    const gm_keyinfo *ki = &g->keys[obj->node];
    if (!ki->flags) return false;
    if (ki->flags[state] & KI_ALL_ANY) return true;
    if (ki->flags[state] & KI_BAD) return false;
    const uint64_t *ns = ki->names + (size_t)state * ki->words;
    for (size_t w = 0; w < ki->words; w++) {
        if (obj->seen && (ns[w] & obj->seen[w])) return false;
    }
    return true;
}
