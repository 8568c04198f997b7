// utf8: the strict (WHATWG) decoder with its maximal subparts and truncated
// tails, the lax decoder, the validity checks and the encoder.
#include <string.h>

#include "../core/utf8.h"
#include "check.h"

#define U(s) ((const uint8_t *)(s))

static void test_strict(void) {
    size_t adv = 0;
    CHECK(utf8_decode(U("A"), 1, &adv) == 'A' && adv == 1);
    CHECK(utf8_decode(U("\xc3\xa9"), 2, &adv) == 0xE9 && adv == 2);
    CHECK(utf8_decode(U("\xe2\x82\xac"), 3, &adv) == 0x20AC && adv == 3);
    CHECK(utf8_decode(U("\xf0\x9f\x98\x80"), 4, &adv) == 0x1F600 && adv == 4);
    CHECK(utf8_decode(U("\xf4\x8f\xbf\xbf"), 4, &adv) == 0x10FFFF && adv == 4);
    // Ill-formed: the maximal subpart becomes one U+FFFD.
    CHECK(utf8_decode(U("\x80"), 1, &adv) == UTF8_BAD && adv == 1);
    CHECK(utf8_decode(U("\xc1\xbf"), 2, &adv) == UTF8_BAD && adv == 1, "overlong lead");
    CHECK(utf8_decode(U("\xe0\x80\xaf"), 3, &adv) == UTF8_BAD && adv == 1, "overlong");
    CHECK(utf8_decode(U("\xed\xa0\x80"), 3, &adv) == UTF8_BAD && adv == 1, "surrogate");
    CHECK(utf8_decode(U("\xf4\x90\x80\x80"), 4, &adv) == UTF8_BAD && adv == 1, "above U+10FFFF");
    CHECK(utf8_decode(U("\xe2\x82X"), 3, &adv) == UTF8_BAD && adv == 2, "subpart of 2");
    CHECK(utf8_decode(U("\xf0\x9f\x98X"), 4, &adv) == UTF8_BAD && adv == 3, "subpart of 3");
    CHECK(utf8_decode(U("\xf0\x9f\x98"), 3, &adv) == UTF8_TRUNCATED && adv == 3, "cut short");
    CHECK(utf8_decode(U("\xc3"), 1, &adv) == UTF8_TRUNCATED && adv == 1);
}

static void test_lax(void) {
    size_t adv = 0;
    CHECK(utf8_decode_lax(U("\xc3\xa9"), 2, &adv) == 0xE9 && adv == 2);
    CHECK(utf8_decode_lax(U("\xc0\xa0"), 2, &adv) == 0x20 && adv == 2, "overlong space decodes");
    CHECK(utf8_decode_lax(U("\xed\xa0\x80"), 3, &adv) == 0xD800 && adv == 3, "surrogates decode");
    CHECK(utf8_decode_lax(U("\xf7\xbf\xbf\xbf"), 4, &adv) == 0x1FFFFF && adv == 4, "21 bits");
    CHECK(utf8_decode_lax(U("\x80"), 1, &adv) == UTF8_BAD && adv == 1);
    CHECK(utf8_decode_lax(U("\xf8\x80\x80\x80\x80"), 5, &adv) == UTF8_BAD && adv == 1);
    CHECK(utf8_decode_lax(U("\xe2\x82X"), 3, &adv) == UTF8_BAD && adv == 1);
    CHECK(utf8_decode_lax(U("\xe2\x82"), 2, &adv) == UTF8_BAD && adv == 1, "past the end");
}

static void test_valid(void) {
    CHECK(utf8_valid("", 0));
    CHECK(utf8_valid("plain", 5));
    CHECK(utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 13));
    CHECK(!utf8_valid("\x80", 1));
    CHECK(!utf8_valid("\xc1\xbf", 2));
    CHECK(!utf8_valid("\xe0\x80\xaf", 3));
    CHECK(!utf8_valid("\xf4\x90\x80\x80", 4)); // above U+10FFFF
    CHECK(!utf8_valid("\xf0\x9f\x98", 3));
    CHECK(utf8_bad_at("ab\xc3\xa9x\xffy", 7) == 5);
    CHECK(utf8_bad_at("ab\xe2\x82", 4) == 2, "a truncated tail is ill-formed");
    CHECK(utf8_bad_at("ab\xc3\xa9", 4) == 4);
}

static void test_encode(void) {
    int32_t cps[] = {0, 0x41, 0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000, 0x10FFFF};
    for (size_t i = 0; i < sizeof cps / sizeof *cps; i++) {
        char buf[4];
        size_t n = utf8_encode(buf, cps[i]), adv = 0;
        CHECK(utf8_decode((const uint8_t *)buf, n, &adv) == cps[i] && adv == n, "U+%04X", (unsigned)cps[i]);
    }
    char buf[4];
    CHECK(utf8_encode(buf, 0x20AC) == 3 && memcmp(buf, "\xe2\x82\xac", 3) == 0);
}

int main(void) {
    test_strict();
    test_lax();
    test_valid();
    test_encode();
    return check_finish("test_utf8");
}
