// utf8: the decoders, checks and the encoder (see utf8.h).
#include "utf8.h"

int32_t utf8_decode(const uint8_t *s, size_t n, size_t *adv) {
    uint8_t b = s[0];
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    int32_t cp;
    if (b < 0x80) {
        *adv = 1;
        return b;
    } else if (b >= 0xC2 && b <= 0xDF) {
        need = 1, cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2, cp = b & 0x0F;
        if (b == 0xE0) lo = 0xA0; // overlong
        if (b == 0xED) hi = 0x9F; // surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3, cp = b & 0x07;
        if (b == 0xF0) lo = 0x90; // overlong
        if (b == 0xF4) hi = 0x8F; // above U+10FFFF
    } else {
        *adv = 1;
        return UTF8_BAD;
    }
    size_t i = 1;
    for (; i <= (size_t)need; i++) {
        if (i >= n) {
            *adv = n;
            return UTF8_TRUNCATED;
        }
        if (s[i] < lo || s[i] > hi) {
            *adv = i;
            return UTF8_BAD;
        }
        lo = 0x80, hi = 0xBF;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *adv = i;
    return cp;
}

int32_t utf8_decode_lax(const uint8_t *s, size_t n, size_t *adv) {
    uint8_t b = s[0];
    *adv = 1;
    if (b < 0x80) return b;
    size_t len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || len > n) return UTF8_BAD;
    int32_t cp = b & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return UTF8_BAD;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *adv = len;
    return cp;
}

size_t utf8_bad_at(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0, adv;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        if (utf8_decode(u + i, n - i, &adv) < 0) return i;
        i += adv;
    }
    return n;
}

bool utf8_valid(const char *s, size_t n) { return utf8_bad_at(s, n) == n; }

size_t utf8_encode(char *dst, int32_t c) {
    if (c < 0x80) {
        dst[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        dst[0] = (char)(0xC0 | (c >> 6));
        dst[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        dst[0] = (char)(0xE0 | (c >> 12));
        dst[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (c >> 18));
    dst[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}
