/* ident: UUIDs through libuuid (see ident.h). */
#include "config.h"

#include <string.h>
#include <time.h>

#include <uuid/uuid.h>

#include "ident.h"

void
ident_new(unsigned char out[IDENT_BYTES])
{
    uuid_generate_random(out);
}

void
ident_new_ordered(unsigned char out[IDENT_BYTES])
{
    struct timespec now;
    unsigned long long ms;

    uuid_generate_random(out); /* the 74 random bits, and the variant */
    clock_gettime(CLOCK_REALTIME, &now);
    ms = (unsigned long long)now.tv_sec * 1000 + (unsigned long long)now.tv_nsec / 1000000;
    for (int i = 0; i < 6; i++)
        out[i] = (unsigned char)(ms >> (8 * (5 - i)));
    out[6] = (unsigned char)(0x70 | (out[6] & 0x0f)); /* version 7 */
}

void
ident_format(const void *bytes, size_t len, char out[IDENT_TEXT])
{
    if (bytes == NULL || len != IDENT_BYTES) {
        out[0] = '\0';
        return;
    }
    uuid_unparse_lower(bytes, out);
}

int
ident_parse(const char *text, unsigned char out[IDENT_BYTES])
{
    if (text == NULL || strlen(text) != IDENT_TEXT - 1)
        return -1;
    return uuid_parse(text, out) == 0 ? 0 : -1;
}
