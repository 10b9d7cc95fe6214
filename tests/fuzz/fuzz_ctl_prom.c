/*
 * Fuzz target: tocsinctl's reader of the Prometheus text format (tools/ctl/ctl_prom), which
 * parses whatever a daemon's /metrics (or anything listening on that port) answers. Every
 * input must parse without a crash or a leak; every sample kept must respect the limits.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_prom.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ctl_prom_t *p = ctl_prom_parse((const char *)data, size);
    if (!p) {
        return 0;
    }
    for (size_t i = 0; i < ctl_prom_count(p); i++) {
        const ctl_prom_sample_t *s = ctl_prom_sample(p, i);
        if (strlen(s->name) > CTL_PROM_MAX_NAME || s->nlabels > CTL_PROM_MAX_LABELS) {
            abort();
        }
        for (size_t k = 0; k < s->nlabels; k++) {
            if (strlen(s->labels[k].value) > CTL_PROM_MAX_VALUE) {
                abort();
            }
        }
        double v;
        ctl_prom_sum(p, s->name, "reason=x", &v);
    }
    ctl_prom_destroy(&p);
    return 0;
}
