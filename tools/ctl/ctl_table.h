/*
 * ctl_table.h — the plain-text tables tocsinctl prints for people.
 *
 * Columns are separated by two spaces; numbers are right-aligned when their column says
 * so. Widths count code points, not bytes. Text that came from a daemon may hold anything,
 * so each cell is cleaned when added: control characters (including escape sequences
 * that would drive the terminal) and bytes that are not valid UTF-8 become '?'. When the
 * table is wider than the terminal, the widest columns are cut first and end in "…".
 * Pure: no I/O.
 */
#ifndef CTL_TABLE_H
#define CTL_TABLE_H

#include <stdbool.h>
#include <stddef.h>

#define CTL_TABLE_MAX_COLS 16
#define CTL_TABLE_MAX_CELL 4096 /* bytes kept of one cell; the rest is cut */

typedef enum {
    CTL_ALIGN_LEFT = 0,
    CTL_ALIGN_RIGHT = 1,
} ctl_align_t;

typedef struct ctl_table ctl_table_t;

/* A table of `ncols` columns (1 to CTL_TABLE_MAX_COLS) with these headers and alignments
 * (`aligns` may be NULL: all left). Returns NULL when out of memory or ncols is out of
 * range. */
ctl_table_t *ctl_table_new(size_t ncols, const char *const *headers, const ctl_align_t *aligns);

/* Frees the table. Safe to call twice and on NULL. */
void ctl_table_destroy(ctl_table_t **self_p);

/* Appends a cell to the current row; a row is complete after ncols cells and the next
 * cell starts a new one. NULL is shown as "-". Returns 0 or TC_ENOMEM. */
int ctl_table_add(ctl_table_t *self, const char *cell);

/* ctl_table_add with printf formatting. */
int ctl_table_addf(ctl_table_t *self, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Rows added so far (a row being filled counts). */
size_t ctl_table_rows(const ctl_table_t *self);

/*
 * Renders header and rows, one line each, ending in '\n'. A last row that is not complete
 * is padded with "-". `max_width` is the terminal's width in columns (0: no limit); a
 * column is never cut below the width of its header or 4, whichever is more, so a very
 * narrow limit can still be exceeded. Returns a string the caller frees, or NULL when out
 * of memory.
 */
char *ctl_table_render(const ctl_table_t *self, size_t max_width);

/* Copies `src` into `dst` (capacity `cap` >= 1) the way cells are cleaned: control
 * characters and invalid UTF-8 become '?'; cut at a code point boundary to fit. */
void ctl_text_clean(const char *src, char *dst, size_t cap);

/* Number of code points in the valid UTF-8 string `s`. */
size_t ctl_text_width(const char *s);

#endif
