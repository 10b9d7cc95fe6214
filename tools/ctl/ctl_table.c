/*
 * ctl_table.c — column widths, cutting to the terminal, and cleaning of cell text.
 */
#include "ctl_table.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"

struct ctl_table {
    size_t ncols;
    char *headers[CTL_TABLE_MAX_COLS];
    ctl_align_t aligns[CTL_TABLE_MAX_COLS];
    char **cells; /* row-major; ncells of them */
    size_t ncells, cap;
};

/* Length of the UTF-8 sequence starting at s (at most `left` bytes), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    unsigned int cp;
    if (c < 0x80) {
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        n = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n > left) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    /* C1 control characters (U+0080..U+009F) drive terminals too. */
    if (cp >= 0x80 && cp < 0xa0) {
        return 0;
    }
    return n;
}

void ctl_text_clean(const char *src, char *dst, size_t cap)
{
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)(src ? src : "");
    size_t left = strlen((const char *)s);
    while (left > 0) {
        size_t n = utf8_seq(s, left);
        if (n == 1 && (s[0] < 0x20 || s[0] == 0x7f)) {
            n = 0;
        }
        size_t out = n ? n : 1;
        if (o + out + 1 > cap) {
            break;
        }
        if (n) {
            memcpy(dst + o, s, n);
        } else {
            dst[o] = '?';
        }
        o += out;
        s += n ? n : 1;
        left -= n ? n : 1;
    }
    dst[o] = '\0';
}

size_t ctl_text_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p & 0xc0) != 0x80) {
            w++;
        }
    }
    return w;
}

ctl_table_t *ctl_table_new(size_t ncols, const char *const *headers, const ctl_align_t *aligns)
{
    if (ncols == 0 || ncols > CTL_TABLE_MAX_COLS) {
        return NULL;
    }
    ctl_table_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    self->ncols = ncols;
    for (size_t i = 0; i < ncols; i++) {
        char buf[256];
        ctl_text_clean(headers && headers[i] ? headers[i] : "", buf, sizeof(buf));
        self->headers[i] = strdup(buf);
        self->aligns[i] = aligns ? aligns[i] : CTL_ALIGN_LEFT;
        if (!self->headers[i]) {
            ctl_table_destroy(&self);
            return NULL;
        }
    }
    return self;
}

void ctl_table_destroy(ctl_table_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    ctl_table_t *self = *self_p;
    for (size_t i = 0; i < self->ncols; i++) {
        free(self->headers[i]);
    }
    for (size_t i = 0; i < self->ncells; i++) {
        free(self->cells[i]);
    }
    free(self->cells);
    free(self);
    *self_p = NULL;
}

int ctl_table_add(ctl_table_t *self, const char *cell)
{
    if (self->ncells == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 64;
        char **cells = realloc(self->cells, cap * sizeof(*cells));
        if (!cells) {
            return TC_ENOMEM;
        }
        self->cells = cells;
        self->cap = cap;
    }
    char *buf = malloc(CTL_TABLE_MAX_CELL);
    if (!buf) {
        return TC_ENOMEM;
    }
    ctl_text_clean(cell ? cell : "-", buf, CTL_TABLE_MAX_CELL);
    char *shrunk = realloc(buf, strlen(buf) + 1);
    self->cells[self->ncells++] = shrunk ? shrunk : buf;
    return 0;
}

int ctl_table_addf(ctl_table_t *self, const char *fmt, ...)
{
    char buf[CTL_TABLE_MAX_CELL];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return ctl_table_add(self, buf);
}

size_t ctl_table_rows(const ctl_table_t *self)
{
    return (self->ncells + self->ncols - 1) / self->ncols;
}

/* A growable output string. */
typedef struct {
    char *buf;
    size_t len, cap;
    bool failed;
} out_t;

static void out_put(out_t *o, const char *s, size_t n)
{
    if (o->failed) {
        return;
    }
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n + 1) {
            cap *= 2;
        }
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->failed = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void out_pad(out_t *o, size_t n)
{
    static const char spaces[] = "                                ";
    while (n > 0) {
        size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
        out_put(o, spaces, k);
        n -= k;
    }
}

/* Writes `text` in a column `width` wide; `last` leaves no trailing blanks. */
static void out_cell(out_t *o, const char *text, size_t width, ctl_align_t align, bool last)
{
    size_t w = ctl_text_width(text);
    if (w <= width) {
        if (align == CTL_ALIGN_RIGHT) {
            out_pad(o, width - w);
        }
        out_put(o, text, strlen(text));
        if (align == CTL_ALIGN_LEFT && !last) {
            out_pad(o, width - w);
        }
        return;
    }
    /* Cut: width-1 code points, then the ellipsis. */
    size_t keep = 0, cps = 0;
    const unsigned char *p = (const unsigned char *)text;
    while (p[keep]) {
        if ((p[keep] & 0xc0) != 0x80) {
            if (cps == width - 1) {
                break;
            }
            cps++;
        }
        keep++;
    }
    out_put(o, text, keep);
    out_put(o, "\xe2\x80\xa6", 3);
}

static const char *cell_at(const ctl_table_t *self, size_t row, size_t col)
{
    size_t i = row * self->ncols + col;
    return i < self->ncells ? self->cells[i] : "-";
}

char *ctl_table_render(const ctl_table_t *self, size_t max_width)
{
    size_t widths[CTL_TABLE_MAX_COLS], mins[CTL_TABLE_MAX_COLS];
    size_t rows = ctl_table_rows(self);
    for (size_t c = 0; c < self->ncols; c++) {
        widths[c] = ctl_text_width(self->headers[c]);
        mins[c] = widths[c] > 4 ? widths[c] : 4;
        for (size_t r = 0; r < rows; r++) {
            size_t w = ctl_text_width(cell_at(self, r, c));
            widths[c] = w > widths[c] ? w : widths[c];
        }
        if (mins[c] > widths[c]) {
            mins[c] = widths[c];
        }
    }
    if (max_width > 0) {
        for (;;) {
            size_t total = 2 * (self->ncols - 1);
            for (size_t c = 0; c < self->ncols; c++) {
                total += widths[c];
            }
            if (total <= max_width) {
                break;
            }
            /* Take one column from the widest column that can still give. */
            size_t best = self->ncols;
            for (size_t c = 0; c < self->ncols; c++) {
                if (widths[c] > mins[c] && (best == self->ncols || widths[c] > widths[best])) {
                    best = c;
                }
            }
            if (best == self->ncols) {
                break;
            }
            widths[best]--;
        }
    }
    out_t o = {0};
    for (size_t r = 0; r <= rows; r++) {
        for (size_t c = 0; c < self->ncols; c++) {
            const char *text = r == 0 ? self->headers[c] : cell_at(self, r - 1, c);
            if (c > 0) {
                out_put(&o, "  ", 2);
            }
            out_cell(&o, text, widths[c], self->aligns[c], c + 1 == self->ncols);
        }
        out_put(&o, "\n", 1);
    }
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    return o.buf;
}
