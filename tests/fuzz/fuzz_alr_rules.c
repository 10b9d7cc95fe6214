/*
 * Fuzz target: a rule file (YAML) through alr_ruleset_load_data, and a silence body (the
 * same bytes as JSON) through alr_silences_create. Checks the loader's promises: it loads
 * or says why, naming the file; a loaded set has valid indexes and renders to JSON.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alr_rules.h"
#include "alr_silence.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    alr_ruleset_t *s = alr_ruleset_load_data((const char *)data, size, "f.yaml", err, sizeof(err));
    if (!s) {
        CHECK(strncmp(err, "f.yaml", 6) == 0);
    } else {
        for (size_t i = 0; i < s->nrules; i++) {
            const alr_rule_t *r = &s->rules[i];
            CHECK(r->receiver < (long)s->nreceivers);
            CHECK(r->policy < (long)s->npolicies);
            CHECK(r->window_ms >= 0 && r->window_ms <= ALR_WINDOW_MAX_MS);
        }
        for (size_t i = 0; i < s->npolicies; i++) {
            CHECK(s->policies[i].ntiers > 0);
            for (size_t t = 0; t < s->policies[i].ntiers; t++) {
                for (size_t k = 0; k < s->policies[i].tiers[t].nreceivers; k++) {
                    CHECK(s->policies[i].tiers[t].receivers[k] < s->nreceivers);
                }
            }
        }
        json_t *j = alr_ruleset_to_json(s);
        json_decref(j);
        alr_ruleset_destroy(&s);
    }
    json_error_t jerr;
    json_t *body = json_loadb((const char *)data, size, 0, &jerr);
    if (body) {
        alr_silences_t *ss = alr_silences_new();
        int status = 0;
        const alr_silence_t *sil =
            alr_silences_create(ss, body, 1, 1800000000000000LL, &status, err, sizeof(err));
        CHECK(sil ? status == 201 : status >= 400);
        alr_silences_destroy(&ss);
        json_decref(body);
    }
    return 0;
}
