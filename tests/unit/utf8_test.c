/* Unit test of utf8: what is valid UTF-8, cuts that never split a character, and
 * sanitized text for alerts and terminals (EUC-KR bytes, ESC sequences, C1 and
 * bidirectional controls). */
#include "config.h"

#include <string.h>

#include "tap.h"
#include "utf8.h"

#define S(lit) lit, sizeof(lit) - 1

static void
test_valid(void)
{
    is_int(utf8_char_len(S("a")), 1, "ASCII is one byte");
    is_int(utf8_char_len(S("\xc3\xa9")), 2, "é is two bytes");
    is_int(utf8_char_len(S("\xeb\xb6\x80")), 3, "부 is three bytes");
    is_int(utf8_char_len(S("\xf0\x9f\x8d\xa9")), 4, "🍩 is four bytes");
    is_int(utf8_char_len("\xeb\xb6\x80", 2), 0, "a character cut short by avail is none");
    is_int(utf8_char_len("", 0), 0, "nothing to read is no character");
    is_int(utf8_char_len(S("\x80")), 0, "a stray continuation byte is no character");
    is_int(utf8_char_len(S("\xc0\xaf")), 0, "an overlong form is not UTF-8");
    is_int(utf8_char_len(S("\xe0\x80\xaf")), 0, "a three-byte overlong form is not UTF-8");
    is_int(utf8_char_len(S("\xed\xa0\x80")), 0, "a UTF-16 surrogate is not UTF-8");
    is_int(utf8_char_len(S("\xf4\x90\x80\x80")), 0, "past U+10FFFF is not UTF-8");
    is_int(utf8_char_len(S("\xf4\x8f\xbf\xbf")), 4, "U+10FFFF is");
    is_int(utf8_char_len(S("\xff")), 0, "0xFF is never UTF-8");

    is_int(utf8_chars(S("부산도너츠 CP-502101")), 15, "characters are counted, not bytes");
    is_int(utf8_chars(S("a\0b")), 3, "a NUL byte inside the length is a character");
    is_int(utf8_chars(S("ok\xba\xce")), -1, "EUC-KR text is not UTF-8");
    is_int(utf8_chars("", 0), 0, "the empty text has no characters");
    ok(utf8_valid(S("부산도너츠 공장")), "Korean UTF-8 is valid");
    ok(!utf8_valid(S("\xb5\xb5\xb3\xca")), "EUC-KR bytes are not");
    ok(!utf8_valid(S("abc\xe2\x82")), "a character cut at the end is not");
}

static void
test_cut(void)
{
    const char *ko = "부산도너츠"; /* 5 characters of 3 bytes */
    size_t n = strlen(ko);

    is_int(utf8_cut(ko, n, 100), n, "a text within the limit is not cut");
    is_int(utf8_cut(ko, n, 9), 9, "a cut between characters stays there");
    is_int(utf8_cut(ko, n, 10), 9, "a cut after the first byte of a character leaves it out");
    is_int(utf8_cut(ko, n, 11), 9, "a cut after its second byte too");
    is_int(utf8_cut(ko, n, 2), 0, "a cut inside the first character leaves nothing");
    is_int(utf8_cut(S("a\xf0\x9f\x8d\xa9"), 4), 1, "a four-byte character is left out whole");
    is_int(utf8_cut(S("abcdef"), 3), 3, "ASCII is cut at the limit");
    is_int(utf8_cut(S("ab\x80\x80\x80\x80\x80"), 4), 4,
           "stray continuation bytes are cut like single bytes");
    is_int(utf8_cut(S("\xba\xce\xbb\xea"), 3), 3, "EUC-KR is cut at the limit too");
    is_int(utf8_cut(S("\xe2\x82\xac"), 0), 0, "a limit of 0 keeps nothing");

    is_int(utf8_cut_chars(ko, n, 2), 6, "two Korean characters are six bytes");
    is_int(utf8_cut_chars(ko, n, 50), n, "fewer characters than the limit: all of it");
    is_int(utf8_cut_chars(S("a\xff"
                            "b"),
                          2),
           2, "a byte that is not UTF-8 counts as one");
    is_int(utf8_cut_chars(S("abc"), 0), 0, "no characters: no bytes");
}

/* utf8_sanitize of a literal into a roomy buffer. */
static const char *
clean(const char *s, size_t len)
{
    static char out[512];
    size_t used = utf8_sanitize(s, len, out, sizeof(out));

    if (used != len)
        diag("only %zu of %zu bytes fitted", used, len);
    return out;
}

static void
test_sanitize(void)
{
    /* "부산도너츠 공장" in EUC-KR: a few of its byte pairs happen to be valid UTF-8
     * (CE BB is λ, EA B5 B5 is 굵), which no one can tell from the bytes alone. The
     * expected text is Python's bytes.decode("utf-8", "backslashreplace"). */
    static const char euckr[] = "\xba\xce\xbb\xea\xb5\xb5\xb3\xca\xc3\xf7 \xb0\xf8\xc0\xe5";
    char small[8], out[UTF8_SANITIZED_SIZE(4)];

    is_str(clean(S("부산도너츠 공장: HTTP 500")), "부산도너츠 공장: HTTP 500",
           "valid text without controls is copied");
    is_str(clean(S(euckr)), "\\xbaλ굵\\xb3\\xca\\xc3\\xf7 \\xb0\\xf8\\xc0\\xe5",
           "EUC-KR bytes that are not UTF-8 are shown as \\xHH");
    ok(utf8_valid(clean(S(euckr)), strlen(clean(S(euckr)))), "and the result is valid UTF-8");
    is_str(clean(S("\x1b[2J\x1b]0;owned\x07red\x1b[0m")), "\\x1b[2J\\x1b]0;owned\\x07red\\x1b[0m",
           "ESC sequences (clear screen, set title) are shown, not obeyed");
    is_str(clean(S("line 1\r\nline 2\tend")), "line 1\\r\\nline 2\\tend",
           "line breaks and tabs are escaped: the result is one line");
    is_str(clean(S("a\0b\x7f"
                   "c")),
           "a\\x00b\\x7fc", "NUL and DEL are escaped");
    is_str(clean(S("\xc2\x9b"
                   "31m")),
           "\\u009b31m", "the C1 control CSI (U+009B) is escaped");
    is_str(clean(S("\x9b"
                   "31m")),
           "\\x9b31m", "a lone 0x9B byte is not UTF-8: escaped");
    is_str(clean(S("abc\xe2\x80\xae"
                   "fed\xe2\x81\xa6"
                   "x\xe2\x80\xa8")),
           "abc\\u202efed\\u2066x\\u2028",
           "bidirectional overrides, isolates and the line separator are escaped");
    is_str(clean(S("C:\\path \"q\"")), "C:\\path \"q\"", "backslashes and quotes stay as they are");
    is_str(clean(S("\xed\xa0\x80")), "\\xed\\xa0\\x80", "a surrogate is three bad bytes");
    is_str(clean("", 0), "", "nothing gives the empty text");

    /* Cut to fit: never inside a character or an escape. */
    is_int(utf8_sanitize(S("ab\x1b"
                           "c"),
                         small, 5),
           2, "an escape that does not fit is left out");
    is_str(small, "ab", "whole, with the NUL");
    is_int(utf8_sanitize(S("a부산"), small, 6), 4, "a character that does not fit is left out");
    is_str(small, "a부", "the text stops before it");
    is_int(utf8_sanitize(S("abc"), small, 1), 0, "a size of 1 holds only the NUL");
    is_str(small, "", "and is terminated");
    is_int(utf8_sanitize(S("\xff\xfe\x1b\x9b"), out, sizeof(out)), 4,
           "UTF8_SANITIZED_SIZE holds the worst case");
    is_str(out, "\\xff\\xfe\\x1b\\x9b", "four escapes of four bytes");
}

int
main(void)
{
    test_valid();
    test_cut();
    test_sanitize();
    return done_testing();
}
