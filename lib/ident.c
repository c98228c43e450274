/* ident: UUIDs through libuuid (see ident.h). */
#include "config.h"

#include <string.h>

#include <uuid/uuid.h>

#include "ident.h"

void
ident_new(unsigned char out[IDENT_BYTES])
{
    uuid_generate_random(out);
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
