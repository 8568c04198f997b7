// data_report: what data_load saw, counted and printed (see data.h): the
// line counts as the loader notes them, the example statistics recomputed
// from a set (also after a split), and the report's text, which the
// fine-tuning jobs read back (serve/ftjob_life.c parse_report: keep its
// "data:", "  examples:", "  tokens:" and "    line N:" lines as they are).
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "data_int.h"

void td_note_bad(data_report *rep, int64_t line, const char *reason) {
    rep->bad++;
    if (rep->n_bad_lines >= DATA_BAD_KEPT) return;
    if (!rep->bad_lines && !(rep->bad_lines = calloc(DATA_BAD_KEPT, sizeof *rep->bad_lines))) return;
    data_bad *b = &rep->bad_lines[rep->n_bad_lines++];
    b->line = line;
    // Cut a long reason at a character boundary.
    size_t n = strlen(reason);
    if (n >= sizeof b->reason) {
        n = sizeof b->reason - 1;
        while (n > 0 && ((unsigned char)reason[n] & 0xC0) == 0x80) n--;
    }
    memcpy(b->reason, reason, n);
    b->reason[n] = '\0';
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

// Nearest-rank percentile of n sorted values.
static int percentile(const int *v, int n, double q) {
    int k = (int)ceil(q * n);
    return v[k < 1 ? 0 : k - 1];
}

void data_report_stats(data_report *rep, const data_set *ds) {
    int n = data_count(ds);
    rep->ok = n;
    rep->tokens = rep->trained = rep->truncated = 0;
    rep->len_min = rep->len_max = rep->len_p50 = rep->len_p90 = rep->len_p99 = 0;
    rep->msg_min = rep->msg_max = 0;
    rep->len_mean = rep->msg_mean = 0;
    rep->tool_examples = rep->tool_defs = rep->tool_calls = rep->tool_results = 0;
    if (n == 0) return;
    int *len = malloc((size_t)n * sizeof *len);
    int64_t msgs = 0;
    rep->msg_min = INT32_MAX;
    for (int i = 0; i < n; i++) {
        const data_example *e = data_get(ds, i);
        if (len) len[i] = e->n;
        rep->tokens += e->n;
        rep->trained += e->n_trained;
        rep->truncated += e->truncated;
        rep->tool_examples += e->n_tools > 0;
        rep->tool_defs += e->n_tools;
        rep->tool_calls += e->n_calls;
        rep->tool_results += e->n_results;
        msgs += e->n_messages;
        rep->msg_min = e->n_messages < rep->msg_min ? e->n_messages : rep->msg_min;
        rep->msg_max = e->n_messages > rep->msg_max ? e->n_messages : rep->msg_max;
    }
    rep->len_mean = (double)rep->tokens / n;
    rep->msg_mean = (double)msgs / n;
    if (!len) return;  // out of memory: no percentiles
    qsort(len, (size_t)n, sizeof *len, cmp_int);
    rep->len_min = len[0];
    rep->len_max = len[n - 1];
    rep->len_p50 = percentile(len, n, 0.50);
    rep->len_p90 = percentile(len, n, 0.90);
    rep->len_p99 = percentile(len, n, 0.99);
    free(len);
}

void data_report_print(FILE *f, const data_report *r, int max_listed) {
    fprintf(f, "data: %s\n", r->path);
    if (r->format != DATA_FMT_NONE)
        fprintf(f, "  format: %s (detected from line %" PRId64 ")\n", data_format_name(r->format), r->format_line);
    else
        fprintf(f, "  format: none detected\n");
    fprintf(f, "  lines: %" PRId64 " (%" PRId64 " blank, skipped)\n", r->lines, r->blank);
    fprintf(f, "  examples: %" PRId64 " ok, %" PRId64 " bad\n", r->ok, r->bad);
    fprintf(f, "  tokens: %" PRId64 " total, %" PRId64 " trained (%.1f%%)\n", r->tokens, r->trained,
            r->tokens ? 100.0 * (double)r->trained / (double)r->tokens : 0.0);
    if (r->ok > 0) {
        fprintf(f, "  tokens per example: min %d, max %d, mean %.1f, p50 %d, p90 %d, p99 %d\n", r->len_min,
                r->len_max, r->len_mean, r->len_p50, r->len_p90, r->len_p99);
        fprintf(f, "  messages per example: min %d, max %d, mean %.1f\n", r->msg_min, r->msg_max, r->msg_mean);
    }
    fprintf(f, "  tools: %" PRId64 " example%s with tools, %" PRId64 " tool definitions, %" PRId64
               " calls, %" PRId64 " tool results\n", r->tool_examples, r->tool_examples == 1 ? "" : "s", r->tool_defs,
            r->tool_calls, r->tool_results);
    fprintf(f, "  truncated at max-seq-len %d: %" PRId64 "\n", r->max_seq_len, r->truncated);
    if (r->bad == 0) return;
    fprintf(f, "  bad lines:\n");
    int shown = 0;
    for (int i = 0; i < r->n_bad_lines && shown < max_listed; i++, shown++)
        fprintf(f, "    line %" PRId64 ": %s\n", r->bad_lines[i].line, r->bad_lines[i].reason);
    if (r->bad > shown) fprintf(f, "    ... and %" PRId64 " more\n", r->bad - shown);
}

void data_report_free(data_report *rep) {
    if (!rep) return;
    free(rep->bad_lines);
    rep->bad_lines = NULL;
    rep->n_bad_lines = 0;
}
