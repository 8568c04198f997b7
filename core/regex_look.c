// regex_look: lookaheads at the start of the string, (?=X) and (?!X) right
// after a top-level alternative's leading ^ (or at its start when the
// pattern is anchored), as in ^(?!internal)[a-z]+$. A lookahead there asks
// that the string begin (or not begin) with a match of X, so the
// alternative's language is its DFA intersected with X.* or with the
// complement of X.*: DFA products (rx_product). Lookaheads anywhere else
// (tempered dots like ((?!x).)*, lookaheads after characters) are not
// regular in that easy way and stay an error naming them.
#include <string.h>

#include "regex_int.h"

// The first lookahead in node k's subtree, or -1.
static int first_look(const rx_ast *a, int k) {
    if (a->nodes[k].kind == RN_LOOK) return k;
    for (int c = a->nodes[k].kid; c >= 0; c = a->nodes[c].next) {
        int l = first_look(a, c);
        if (l >= 0) return l;
    }
    return -1;
}

int rx_has_look(const rx_ast *a) {
    return first_look(a, a->root) >= 0;
}

// Under search semantics P(?=Y) at the very end of an alternative matches
// where PY does (what follows is free anyway), so such a lookahead becomes
// a plain group: its node turns into a sequence of its one alternation.
void rx_inline_tail_looks(rx_ast *a) {
    for (int c = a->nodes[a->root].kid; c >= 0; c = a->nodes[c].next) {
        int last = a->nodes[c].kid;
        while (last >= 0 && a->nodes[last].next >= 0) last = a->nodes[last].next;
        if (last >= 0 && a->nodes[last].kind == RN_LOOK && !a->nodes[last].min) a->nodes[last].kind = RN_CAT;
    }
}

static int look_error(const rx_node *nd, const char *where, err_t *err) {
    return err_set(err, "regex: %s '%s' is only supported %s (at offset %d)", nd->min ? "negative lookahead" : "lookahead",
                   nd->min ? "(?!" : "(?=", where, nd->max);
}

// Checks alternative alt: lookaheads only in its leading run of ^ and
// lookaheads, after a ^ when searching, with no lookahead inside them.
static int check_alt(const rx_ast *a, int alt, int search, err_t *err) {
    int lead = 1, bol = !search;
    for (int c = a->nodes[alt].kid; c >= 0; c = a->nodes[c].next) {
        const rx_node *nd = &a->nodes[c];
        bol |= nd->kind == RN_BOL;
        lead &= nd->kind == RN_BOL || nd->kind == RN_LOOK;
        int l = nd->kind == RN_LOOK ? first_look(a, nd->kid) : first_look(a, c);
        if (nd->kind == RN_LOOK && (!lead || !bol)) return look_error(nd, "right after a leading '^'", err);
        if (l >= 0) return look_error(&a->nodes[l], nd->kind == RN_LOOK ? "unnested" : "right after a leading '^'", err);
    }
    return 0;
}

// The DFA of one alternative with its lookaheads applied.
static rx_dfa *alt_dfa(const rx_ast *a, int alt, unsigned flags, err_t *err) {
    int search = (flags & RX_SEARCH) != 0;
    rx_dfa *d = rx_compile_node(a, alt, search, search, flags, err);
    for (int c = a->nodes[alt].kid; d && c >= 0; c = a->nodes[c].next) {
        const rx_node *nd = &a->nodes[c];
        if (nd->kind != RN_LOOK) continue;
        // X at the start, then anything: the strings a lookahead accepts.
        rx_dfa *x = rx_compile_node(a, nd->kid, 0, 1, flags, err), *y = NULL;
        if (!x && !nd->min) return rx_free(d), NULL; // (?=X) with X empty, or an error
        if (!x && strstr(err->msg, "matches no string")) continue; // (?!X) with X empty: no constraint
        if (x) y = rx_product(d, x, nd->min ? RX_ANDNOT : RX_AND, err);
        rx_free(d), rx_free(x);
        d = y;
    }
    return d;
}

rx_dfa *rx_compile_look(const rx_ast *a, unsigned flags, err_t *err) {
    int search = (flags & RX_SEARCH) != 0;
    for (int c = a->nodes[a->root].kid; c >= 0; c = a->nodes[c].next)
        if (check_alt(a, c, search, err)) return NULL;
    rx_dfa *u = NULL;
    int empty = 0;
    for (int c = a->nodes[a->root].kid; c >= 0; c = a->nodes[c].next) {
        rx_dfa *d = alt_dfa(a, c, flags, err);
        if (!d) {
            if (!strstr(err->msg, "matches no string")) return rx_free(u), NULL;
            empty = 1; // this alternative matches nothing; the others may
            continue;
        }
        rx_dfa *v = u ? rx_product(u, d, RX_OR, err) : d;
        if (u) rx_free(u), rx_free(d);
        if (!v) return NULL;
        u = v;
    }
    if (!u && empty) err_set(err, "regex: matches no string");
    return u;
}
