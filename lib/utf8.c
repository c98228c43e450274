/* utf8: checking, cutting and sanitizing UTF-8 text (see utf8.h). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "utf8.h"

static int
utf8_continues(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/* Bytes of the sequence a lead byte announces (2 to 4), 1 for ASCII and for bytes
 * that cannot start a sequence. */
static size_t
utf8_lead_len(unsigned char c)
{
    if (c >= 0xF0 && c <= 0xF7)
        return 4;
    if (c >= 0xE0)
        return c <= 0xEF ? 3 : 1;
    if (c >= 0xC0)
        return 2;
    return 1;
}

size_t
utf8_char_len(const char *s, size_t avail)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned long c;
    size_t n;

    if (avail == 0)
        return 0;
    if (p[0] < 0x80)
        return 1;
    /* C0 and C1 could only start overlong forms; F5 and above only values past
     * U+10FFFF. */
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2, c = p[0] & 0x1F;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        n = 3, c = p[0] & 0x0F;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4, c = p[0] & 0x07;
    else
        return 0;
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (!utf8_continues(p[i]))
            return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
        (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    return n;
}

long
utf8_chars(const char *s, size_t len)
{
    long count = 0;

    for (size_t i = 0; i < len; count++) {
        size_t n = utf8_char_len(s + i, len - i);
        if (n == 0)
            return -1;
        i += n;
    }
    return count;
}

int
utf8_valid(const char *s, size_t len)
{
    return utf8_chars(s, len) >= 0;
}

size_t
utf8_cut(const char *s, size_t len, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;

    if (len <= max)
        return len;
    if (!utf8_continues(p[max]))
        return max;
    /* The byte after the cut continues a sequence: find where it starts (at most 3
     * bytes back) and leave it out when it reaches past the cut. */
    for (size_t back = 1; back <= 3 && back <= max; back++) {
        unsigned char c = p[max - back];
        if (utf8_continues(c))
            continue;
        return utf8_lead_len(c) > back ? max - back : max;
    }
    return max;
}

size_t
utf8_cut_chars(const char *s, size_t len, size_t max_chars)
{
    size_t i = 0;

    for (size_t chars = 0; i < len && chars < max_chars; chars++) {
        size_t n = utf8_char_len(s + i, len - i);
        i += n > 0 ? n : 1;
    }
    return i;
}

/* The code point of the valid character of n bytes at p. */
static unsigned long
utf8_decode(const unsigned char *p, size_t n)
{
    static const unsigned char lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    unsigned long c = p[0] & lead_mask[n];

    for (size_t i = 1; i < n; i++)
        c = (c << 6) | (p[i] & 0x3F);
    return c;
}

/* Characters that are valid but change what a terminal or a reader shows rather
 * than showing themselves. */
static int
utf8_hidden(unsigned long c)
{
    return (c >= 0x80 && c <= 0x9F) ||     /* C1 controls (U+009B is CSI) */
           c == 0x061C ||                  /* Arabic letter mark */
           c == 0x200E || c == 0x200F ||   /* left-to-right and right-to-left marks */
           (c >= 0x2028 && c <= 0x202E) || /* line, paragraph separators; embeddings, overrides */
           (c >= 0x2066 && c <= 0x2069);   /* isolates */
}

/* The escape of a C0 control or DEL: \n, \r and \t as in C, the others in hex. */
static size_t
utf8_escape_control(unsigned long c, char *piece, size_t size)
{
    switch (c) {
    case '\n':
        return (size_t)snprintf(piece, size, "\\n");
    case '\r':
        return (size_t)snprintf(piece, size, "\\r");
    case '\t':
        return (size_t)snprintf(piece, size, "\\t");
    default:
        return (size_t)snprintf(piece, size, "\\x%02lx", c);
    }
}

size_t
utf8_sanitize(const char *s, size_t len, char *out, size_t size)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;

    if (size == 0)
        return 0;
    while (i < len) {
        char piece[8];
        size_t n = utf8_char_len(s + i, len - i), plen;
        unsigned long c = n > 0 ? utf8_decode(p + i, n) : 0;

        if (n == 0) {
            n = 1;
            plen = (size_t)snprintf(piece, sizeof(piece), "\\x%02x", p[i]);
        } else if (c < 0x20 || c == 0x7F) {
            plen = utf8_escape_control(c, piece, sizeof(piece));
        } else if (utf8_hidden(c)) {
            plen = (size_t)snprintf(piece, sizeof(piece), "\\u%04lx", c);
        } else {
            memcpy(piece, s + i, n);
            plen = n;
        }
        if (plen >= size - o)
            break;
        memcpy(out + o, piece, plen);
        o += plen;
        i += n;
    }
    out[o] = '\0';
    return i;
}
