// utf8: decoding, checking and encoding UTF-8, one copy for every caller.
//
// Two decoders, because callers need two answers for ill-formed input:
//   utf8_decode      strict, as the WHATWG decoder (and Rust's
//                    from_utf8_lossy, hence Hugging Face's tokenizers) reads
//                    bytes: RFC 3629, no overlong forms, no surrogates,
//                    nothing past U+10FFFF; it reports the maximal subpart
//                    of an ill-formed sequence (what becomes one U+FFFD).
//   utf8_decode_lax  the bit patterns only (a lead byte and its continuation
//                    bytes): overlong forms, surrogates and values up to
//                    U+1FFFFF decode; for printers that must never lose a
//                    byte of what they were given.
// Everything else (utf8_valid, utf8_bad_at) is strict.
#ifndef TESSERA_UTF8_H
#define TESSERA_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    UTF8_BAD = -1,       // ill-formed; *adv: its maximal subpart (>= 1)
    UTF8_TRUNCATED = -2, // a well-formed prefix cut short by the end (*adv = n)
};

// Decodes the code point at s[0..n), n >= 1. Returns it with *adv its
// length in bytes, or UTF8_BAD / UTF8_TRUNCATED as above.
int32_t utf8_decode(const uint8_t *s, size_t n, size_t *adv);

// Decodes the code point at s[0..n), n >= 1, by the bit patterns alone.
// Returns it with *adv its length, or UTF8_BAD with *adv = 1 when s[0] is
// no lead byte or a continuation byte is missing (also past the end).
int32_t utf8_decode_lax(const uint8_t *s, size_t n, size_t *adv);

// Whether s[0..n) is well-formed UTF-8 (strict).
bool utf8_valid(const char *s, size_t n);

// The offset of the first byte of the first ill-formed (or truncated)
// sequence in s[0..n), or n when there is none (strict).
size_t utf8_bad_at(const char *s, size_t n);

// Writes code point c (at most U+10FFFF) to dst as 1-4 bytes; returns how many.
size_t utf8_encode(char *dst, int32_t c);

#endif
