/*
 * ctl_rules.h — `tocsinctl rules check FILE`: the alerter's own parser validates the file
 * (tocsin_alerter_core, so the errors are the alerter's, with file and line), and a plan
 * says, for each rule, what makes it fire and who would be notified when: the first
 * notification after the rule's `for` and its route's group wait, then each escalation
 * tier if nobody acknowledges, the policy's repeats and the route's reminders. With the
 * alerter's live alerts, each rule also gets its alert's state and next scheduled action.
 *
 * The plan is built from the rule set's JSON form (alr_ruleset_to_json, the document the
 * alerter serves at /api/v1/rules), so it needs nothing of the parser's internals. Pure
 * but for ctl_rules_load, which reads the file.
 */
#ifndef CTL_RULES_H
#define CTL_RULES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Loads and validates rule file(s) (a path, or several separated by commas) with the
 * alerter's parser. Returns the rule set's JSON form (new reference), or NULL with the
 * alerter's error ("FILE:LINE: reason") in `err`.
 */
json_t *ctl_rules_load(const char *paths, char *err, size_t errlen);

/*
 * The plan, one entry per rule, in file order:
 *   {"alert","type","service","name","severity","fingerprint","file","line",
 *    "condition": "error rate above 5 % over 5m", "for": "5m",
 *    "policy": name|null, "group_wait": "500ms", "repeat_interval": "4h"|null,
 *    "schedule": [{"after_ms": 300500, "tier": 0, "receivers": ["chat"]}, ...],
 *    "repeat": 0,
 *    "live": null | {"state": "...", "next_action": {...}|null}}
 * `after_ms` counts from the moment the condition starts to hold. `alerts` is the
 * alerter's GET /api/v1/alerts answer, or NULL. New reference; NULL when out of memory.
 */
json_t *ctl_rules_plan(const json_t *ruleset, const json_t *alerts);

/* The plan as a table plus one line per rule with its schedule. */
char *ctl_rules_render(const json_t *plan, int64_t now_us, size_t width);

/* A rule's condition in words, from its JSON form. */
void ctl_rules_condition(const json_t *rule, char *buf, size_t len);

#endif
