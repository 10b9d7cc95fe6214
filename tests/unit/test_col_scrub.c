/*
 * Unit tests for collector/col_scrub: Relay's default rules on text (table-driven, with the
 * kind counted), stricter rules from a rules file, the rules file's errors, scrubbing of whole
 * events (tags, log fields, messages, routes, user ids), and the dry checks agreeing with
 * the real scrubbing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "col_scrub.h"
#include "tc_error.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define NONE ((col_scrub_kind_t)-1)

typedef struct {
    const char *in;
    const char *out;       /* NULL: unchanged */
    col_scrub_kind_t kind; /* what was counted (once), NONE for nothing */
} scase_t;

static col_arena_t *arena;

static int setup(void **state)
{
    (void)state;
    arena = col_arena_new(1 << 20);
    return arena ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    col_arena_destroy(&arena);
    return 0;
}

/* Runs the table against `rules`: the output, the count, and the dry check. A case whose
 * expected output starts with '~' is compared as a prefix up to the '~' at its end. */
static void run_table(const col_scrub_rules_t *rules, const scase_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        col_scrub_stats_t st = {0};
        char *out = NULL;
        assert_int_equal(col_scrub_text(rules, cases[i].in, arena, &out, &st), 0);
        const char *want = cases[i].out ? cases[i].out : cases[i].in;
        bool ok;
        if (want[0] == '~') {
            size_t plen = strcspn(want + 1, "~");
            ok = strncmp(out, want + 1, plen) == 0 && strlen(out) > plen;
        } else {
            ok = strcmp(out, want) == 0;
        }
        if (!ok) {
            fail_msg("\"%s\": got \"%s\", expected \"%s\"", cases[i].in, out, want);
        }
        if (!cases[i].out && out != cases[i].in) {
            fail_msg("\"%s\": unchanged text was copied", cases[i].in);
        }
        for (int k = 0; k < COL_SCRUB_KIND_COUNT; k++) {
            uint64_t expect = (col_scrub_kind_t)k == cases[i].kind ? 1 : 0;
            if (st.counts[k] != expect) {
                fail_msg("\"%s\": %s counted %llu, expected %llu", cases[i].in,
                         col_scrub_kind_name((col_scrub_kind_t)k), (unsigned long long)st.counts[k],
                         (unsigned long long)expect);
            }
        }
        bool clean = col_scrub_span_clean(rules, cases[i].in, strlen(cases[i].in));
        if (clean != (cases[i].out == NULL)) {
            fail_msg("\"%s\": the dry check says %s", cases[i].in, clean ? "clean" : "dirty");
        }
        col_arena_reset(arena);
    }
}

static void test_default_rules(void **state)
{
    (void)state;
    static const scase_t cases[] = {
        {"", NULL, NONE},
        {"nothing to see here", NULL, NONE},
        {"password=hunter2", "password=[Filtered]", COL_SCRUB_SECRET_KEY},
        {"login failed: passwd = 'x y' end", "login failed: passwd = '[Filtered]' end",
         COL_SCRUB_SECRET_KEY},
        {"/cb?user=bob&token=abc123&x=1", "/cb?user=bob&token=[Filtered]&x=1",
         COL_SCRUB_SECRET_KEY},
        {"{\"api_key\": \"AKIA123\", \"n\": 1}", "{\"api_key\": \"[Filtered]\", \"n\": 1}",
         COL_SCRUB_SECRET_KEY},
        {"X-Api-Key:abc", "X-Api-Key:[Filtered]", COL_SCRUB_SECRET_KEY},
        {"db.password=p;next", "db.password=[Filtered];next", COL_SCRUB_SECRET_KEY},
        {"Authorization: Bearer abcdef0123456789", "Authorization: Bearer [Filtered]",
         COL_SCRUB_SECRET_KEY},
        {"Cookie: sid=1; lang=en", "Cookie: [Filtered]; lang=en", COL_SCRUB_SECRET_KEY},
        {"token=", NULL, NONE},
        {"sent Bearer abcdefgh12345678 upstream", "sent Bearer [Filtered] upstream",
         COL_SCRUB_BEARER},
        {"bearer of bad news", NULL, NONE},
        {"card 4111 1111 1111 1111 ok", "card [creditcard] ok", COL_SCRUB_CREDIT_CARD},
        {"card 4111-1111-1111-1111", "card [creditcard]", COL_SCRUB_CREDIT_CARD},
        {"amex 378282246310005.", "amex [creditcard].", COL_SCRUB_CREDIT_CARD},
        {"not luhn 4111111111111112", NULL, NONE},
        {"a timestamp 1700000000000", NULL, NONE},
        {"too long 41111111111111111111", NULL, NONE},
        {"in a word x4111111111111111", NULL, NONE},
        {"see https://bob:pw123@host.io/x", "see https://bob:[Filtered]@host.io/x",
         COL_SCRUB_URL_CREDENTIALS},
        {"redis://:secretpw@cache:6379", "redis://:[Filtered]@cache:6379",
         COL_SCRUB_URL_CREDENTIALS},
        {"https://bob@host.io", NULL, NONE},
        {"x -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- y",
         "x [Filtered] y", COL_SCRUB_PEM_KEY},
        {"-----BEGIN PRIVATE KEY-----\ncut short", "[Filtered]", COL_SCRUB_PEM_KEY},
        {"-----BEGIN CERTIFICATE-----\nMIIE\n-----END CERTIFICATE-----", NULL, NONE},
        {"mail bob@example.com", NULL, NONE},
        {"ip 10.0.0.1", NULL, NONE},
        {"author=bob", "author=[Filtered]", COL_SCRUB_SECRET_KEY}, /* "auth", as in Relay */
    };
    col_scrub_rules_t *rules = col_scrub_rules_default();
    assert_non_null(rules);
    run_table(rules, cases, N_ELEMS(cases));
    assert_true(col_scrub_key_is_secret(rules, "X-API-KEY"));
    assert_true(col_scrub_key_is_secret(rules, "session_id"));
    assert_false(col_scrub_key_is_secret(rules, "region"));
    assert_false(col_scrub_key_is_secret(rules, NULL));
    col_scrub_rules_destroy(&rules);
    col_scrub_rules_destroy(&rules); /* safe twice */
}

static col_scrub_rules_t *parse_ok(const char *text)
{
    col_scrub_rules_t *r = NULL;
    char err[256] = "";
    int rc = col_scrub_rules_parse(text, strlen(text), &r, err, sizeof(err));
    if (rc != 0) {
        fail_msg("rules refused: %s", err);
    }
    return r;
}

static void test_strict_rules(void **state)
{
    (void)state;
    col_scrub_rules_t *rules = parse_ok("# strict\n"
                                        "emails = mask\n"
                                        "ips = hash\n"
                                        "safe_keys = author\n"
                                        "extra_secret_keys = ssn, PIN-code\n"
                                        "secrets = hash\n"
                                        "credit_cards = off\n"
                                        "hash_key = fleet-key\n");
    static const scase_t cases[] = {
        {"mail bob.smith+x@example.com.", "mail [email].", COL_SCRUB_EMAIL},
        {"not@an-email", NULL, NONE},
        {"ip 10.0.0.1 down", "~ip [ip:~", COL_SCRUB_IP},
        {"v6 fe80::1%eth0", "~v6 [ip:~", COL_SCRUB_IP},
        {"version 1.2.3.4.5", NULL, NONE},
        {"author=bob", NULL, NONE},
        {"ssn=123-45-6789", "~ssn=[hash:~", COL_SCRUB_SECRET_KEY},
        {"pincode: 1234", "~pincode: [hash:~", COL_SCRUB_SECRET_KEY},
        {"card 4111 1111 1111 1111", NULL, NONE},
    };
    run_table(rules, cases, N_ELEMS(cases));
    /* Hashes are stable for a key and differ between keys. */
    char *a = NULL, *b = NULL;
    col_scrub_stats_t st = {0};
    assert_int_equal(col_scrub_text(rules, "ssn=1", arena, &a, &st), 0);
    assert_int_equal(col_scrub_text(rules, "ssn=1", arena, &b, &st), 0);
    assert_string_equal(a, b);
    col_scrub_rules_t *other = parse_ok("secrets = hash\nhash_key = another\n");
    char *c = NULL;
    assert_int_equal(col_scrub_text(other, "password=1", arena, &c, &st), 0);
    assert_int_equal(col_scrub_text(rules, "password=1", arena, &a, &st), 0);
    assert_string_not_equal(a, c);
    col_arena_reset(arena);
    col_scrub_rules_destroy(&other);
    col_scrub_rules_destroy(&rules);

    /* No secret patterns at all. */
    rules = parse_ok("secret_keys =\n");
    assert_false(col_scrub_key_is_secret(rules, "password"));
    col_scrub_rules_destroy(&rules);
}

static void test_rules_errors(void **state)
{
    (void)state;
    static char many[8192];
    size_t n = (size_t)snprintf(many, sizeof(many), "extra_secret_keys = ");
    for (int i = 0; i < 300; i++) {
        n += (size_t)snprintf(many + n, sizeof(many) - n, "k%d,", i);
    }
    static char longline[5000];
    memset(longline, 'x', sizeof(longline) - 1);
    static const struct {
        const char *text;
        int rc;
        const char *err; /* part of the message */
    } cases[] = {
        {"bogus = 1\n", TC_EUNKNOWNKEY, "line 1: unknown key"},
        {"\n\nemails = sometimes\n", TC_EINVAL, "line 3: emails"},
        {"secrets = off\n", TC_EINVAL, "secrets"},
        {"user_ids = mask\n", TC_EINVAL, "user_ids"},
        {"bearer_tokens = maybe\n", TC_EINVAL, "bearer_tokens"},
        {"no equals sign\n", TC_EPARSE, "line 1: expected key = value"},
        {"safe_keys = ok, -_-\n", TC_EINVAL, "safe_keys"},
        {many, TC_ETOOBIG, "more than 256 patterns"},
        {longline, TC_ETOOBIG, "longer than"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        col_scrub_rules_t *r = (col_scrub_rules_t *)0x1;
        char err[256] = "";
        int rc = col_scrub_rules_parse(cases[i].text, strlen(cases[i].text), &r, err, sizeof(err));
        if (rc != cases[i].rc || !strstr(err, cases[i].err)) {
            fail_msg("case %zu: rc %d \"%s\", expected %d \"%s\"", i, rc, err, cases[i].rc,
                     cases[i].err);
        }
        assert_null(r);
    }
    /* A NUL byte in the text is refused, not read past. */
    col_scrub_rules_t *r = NULL;
    char err[128];
    assert_int_equal(col_scrub_rules_parse("emails = mask\0x", 15, &r, err, sizeof(err)),
                     TC_EPARSE);
}

/* Builds an event with tags, a user id and a body, scrubs it, and checks each string. */
static void test_event(void **state)
{
    (void)state;
    Tocsin__V1__Event ev = TOCSIN__V1__EVENT__INIT;
    Tocsin__V1__Event__TagsEntry t[3], *tp[3];
    const char *kv[3][2] = {
        {"password", "hunter2"}, {"region", "eu"}, {"note", "4111111111111111"}};
    for (int i = 0; i < 3; i++) {
        tocsin__v1__event__tags_entry__init(&t[i]);
        t[i].key = (char *)kv[i][0];
        t[i].value = (char *)kv[i][1];
        tp[i] = &t[i];
    }
    ev.n_tags = 3;
    ev.tags = tp;
    ev.service = "svc";
    ev.user_id = "bob@example.com";
    Tocsin__V1__LogRecord log = TOCSIN__V1__LOG_RECORD__INIT;
    Tocsin__V1__LogRecord__FieldsEntry f[2], *fp[2];
    tocsin__v1__log_record__fields_entry__init(&f[0]);
    tocsin__v1__log_record__fields_entry__init(&f[1]);
    f[0].key = "api-key";
    f[0].value = "";
    f[1].key = "url";
    f[1].value = "https://u:p@h.io";
    fp[0] = &f[0];
    fp[1] = &f[1];
    log.n_fields = 2;
    log.fields = fp;
    log.message = "token=abc";
    ev.body_case = TOCSIN__V1__EVENT__BODY_LOG;
    ev.log = &log;

    /* Defaults: the secret tag masked, the card masked, the user id kept (e-mails are not
     * scrubbed by default), the empty secret field left, the URL password masked. */
    col_scrub_rules_t *rules = col_scrub_rules_default();
    col_scrub_stats_t st = {0};
    assert_int_equal(col_scrub_event(rules, &ev, arena, &st), 0);
    assert_int_equal(ev.n_tags, 3);
    assert_string_equal(ev.tags[0]->value, "[Filtered]");
    assert_string_equal(ev.tags[1]->value, "eu");
    assert_string_equal(ev.tags[2]->value, "[creditcard]");
    assert_string_equal(ev.user_id, "bob@example.com");
    assert_string_equal(log.fields[0]->value, "");
    assert_string_equal(log.fields[1]->value, "https://u:[Filtered]@h.io");
    assert_string_equal(log.message, "token=[Filtered]");
    assert_int_equal(st.counts[COL_SCRUB_SECRET_KEY], 2);
    assert_int_equal(st.counts[COL_SCRUB_CREDIT_CARD], 1);
    assert_int_equal(st.counts[COL_SCRUB_URL_CREDENTIALS], 1);
    col_scrub_rules_destroy(&rules);

    /* remove: secret entries leave the arrays; an e-mail user id is hashed when e-mails are
     * scrubbed (it stays distinct for counting users). */
    t[0].value = "hunter2";
    log.n_fields = 2;
    log.fields = fp;
    f[0].value = "";
    rules = parse_ok("secrets = remove\nemails = mask\n");
    memset(&st, 0, sizeof(st));
    assert_int_equal(col_scrub_event(rules, &ev, arena, &st), 0);
    assert_int_equal(ev.n_tags, 2);
    assert_string_equal(ev.tags[0]->key, "region");
    assert_int_equal(log.n_fields, 1);
    assert_string_equal(log.fields[0]->key, "url");
    assert_int_equal(strlen(ev.user_id), 32);
    assert_int_equal(st.counts[COL_SCRUB_USER_ID], 1);
    char first_hash[33];
    memcpy(first_hash, ev.user_id, 33);
    ev.user_id = "bob@example.com";
    assert_int_equal(col_scrub_event(rules, &ev, arena, &st), 0);
    assert_string_equal(ev.user_id, first_hash); /* the same user, the same hash */
    ev.user_id = "carol@example.com";
    assert_int_equal(col_scrub_event(rules, &ev, arena, &st), 0);
    assert_string_not_equal(ev.user_id, first_hash);
    col_scrub_rules_destroy(&rules);

    /* user_ids = remove, and the dry checks. */
    rules = parse_ok("user_ids = remove\n");
    assert_false(col_scrub_user_id_clean(rules, "u1", 2));
    assert_true(col_scrub_user_id_clean(rules, "", 0));
    ev.user_id = "u1";
    assert_int_equal(col_scrub_event(rules, &ev, arena, &st), 0);
    assert_string_equal(ev.user_id, "");
    assert_false(col_scrub_pair_clean(rules, "token", 5, "x", 1));
    assert_true(col_scrub_pair_clean(rules, "token", 5, "", 0));
    assert_true(col_scrub_pair_clean(rules, "region", 6, "eu", 2));
    assert_false(col_scrub_pair_clean(rules, "note", 4, "4111111111111111", 16));
    col_scrub_rules_destroy(&rules);
    rules = parse_ok("secrets = remove\n");
    assert_false(col_scrub_pair_clean(rules, "token", 5, "", 0)); /* removed even empty */
    assert_true(col_scrub_user_id_clean(rules, "bob@example.com", 15));
    col_scrub_rules_destroy(&rules);
    col_arena_reset(arena);
}

static void test_kind_names(void **state)
{
    (void)state;
    static const char *const names[] = {"secret_key", "bearer_token",    "credit_card",
                                        "pem_key",    "url_credentials", "email",
                                        "ip",         "user_id"};
    assert_int_equal(N_ELEMS(names), COL_SCRUB_KIND_COUNT);
    for (int k = 0; k < COL_SCRUB_KIND_COUNT; k++) {
        assert_string_equal(col_scrub_kind_name((col_scrub_kind_t)k), names[k]);
    }
    assert_string_equal(col_scrub_kind_name(COL_SCRUB_KIND_COUNT), "unknown");
}

/* Long hostile texts: every rule nearly matching, over and over, still ends. */
static void test_long_inputs(void **state)
{
    (void)state;
    static const char *units[] = {"a=", "a@", "1.", "::", "-----", "Bearer ", "4 ", "x://"};
    col_scrub_rules_t *rules = parse_ok("emails = mask\nips = mask\n");
    for (size_t u = 0; u < N_ELEMS(units); u++) {
        size_t ul = strlen(units[u]), n = 200000;
        char *in = malloc(n + 1);
        for (size_t i = 0; i < n; i++) {
            in[i] = units[u][i % ul];
        }
        in[n] = '\0';
        char *out = NULL;
        col_scrub_stats_t st = {0};
        assert_int_equal(col_scrub_text(rules, in, arena, &out, &st), 0);
        assert_non_null(out);
        free(in);
        col_arena_reset(arena);
    }
    col_scrub_rules_destroy(&rules);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_rules), cmocka_unit_test(test_strict_rules),
        cmocka_unit_test(test_rules_errors),  cmocka_unit_test(test_event),
        cmocka_unit_test(test_kind_names),    cmocka_unit_test(test_long_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
