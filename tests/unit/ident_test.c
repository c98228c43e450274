/* Unit test of ident: UUID text round trip and rejection of non-UUIDs. */
#include "config.h"

#include "ident.h"
#include "tap.h"

int
main(void)
{
    unsigned char a[IDENT_BYTES], b[IDENT_BYTES];
    char text[IDENT_TEXT];

    ident_new(a);
    ident_format(a, sizeof(a), text);
    is_int(strlen(text), 36, "canonical text is 36 characters");
    is_int(text[14], '4', "version 4");
    ok(ident_parse(text, b) == 0 && memcmp(a, b, sizeof(a)) == 0, "text parses back to the bytes");
    ident_new(b);
    ok(memcmp(a, b, sizeof(a)) != 0, "two new ids differ");
    ok(ident_parse("not-a-uuid", b) < 0, "garbage is rejected");
    ok(ident_parse("c9a4f1e2-d3b5-4a6f-8e7d-6c5b4a39280", b) < 0, "35 characters are rejected");
    ok(ident_parse(NULL, b) < 0, "NULL is rejected");
    ident_format("short", 5, text);
    is_str(text, "", "wrong length formats as empty");
    ident_format(NULL, 0, text);
    is_str(text, "", "NULL formats as empty");
    return done_testing();
}
