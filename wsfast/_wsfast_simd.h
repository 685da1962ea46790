/* _wsfast_simd.h -- the byte loops of wsfast._frame.
 *
 *   wsf_mask()        XOR with the 4-byte masking key (RFC 6455 §5.3), copying
 *                     or in place (dst == src), starting at any key phase.
 *   wsf_ascii_len()   length of the leading ASCII run.
 *   wsf_utf8_check()  incremental UTF-8 automaton (RFC 3629 and the Unicode
 *                     "maximal subpart" rules, the same as CPython's decoder).
 *
 * SSE2 is the x86_64 baseline. The AVX2 versions are compiled with
 * __attribute__((target("avx2"))) and chosen at run time (wsf_init()), so the
 * extension runs on any x86_64 CPU without -march=native. Elsewhere (and on
 * compilers without the target attribute) the loops work on uint64 words.
 *
 * wsf_level: 0 = uint64 words, 1 = SSE2, 2 = AVX2. wsf_init() sets the best
 * one the CPU has; tests may lower it with wsf_set_level() to reach every path.
 */
#ifndef WSFAST_SIMD_H
#define WSFAST_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* WSF_NO_SIMD (e.g. CFLAGS=-DWSF_NO_SIMD) builds only the portable path. */
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(WSF_NO_SIMD)
#  define WSF_X86 1
#  include <emmintrin.h>
#  if defined(__GNUC__) || defined(__clang__)
#    define WSF_HAVE_AVX2 1
#    include <immintrin.h>
#    define WSF_AVX2_FN __attribute__((target("avx2")))
#  endif
#endif

#if defined(_MSC_VER) && !defined(__cplusplus)
#  define inline __inline
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define WSF_LIKELY(x) __builtin_expect(!!(x), 1)
#  define WSF_UNLIKELY(x) __builtin_expect(!!(x), 0)
#  define WSF_CTZ32(x) ((unsigned)__builtin_ctz(x))
#  define WSF_CTZ64(x) ((unsigned)__builtin_ctzll(x))
#else
#  define WSF_LIKELY(x) (x)
#  define WSF_UNLIKELY(x) (x)
static unsigned wsf_ctz64_portable(uint64_t x) {
    unsigned n = 0;
    while (!(x & 1)) { x >>= 1; n++; }
    return n;
}
#  define WSF_CTZ32(x) wsf_ctz64_portable((uint64_t)(x))
#  define WSF_CTZ64(x) wsf_ctz64_portable(x)
#endif

static int wsf_level = 0;
static int wsf_max_level = 0;

static inline void wsf_init(void)
{
#if defined(WSF_X86)
    wsf_max_level = 1;
#  if defined(WSF_HAVE_AVX2)
    __builtin_cpu_init();
    /* libgcc / compiler-rt also check that the OS saves the YMM state. */
    if (__builtin_cpu_supports("avx2"))
        wsf_max_level = 2;
#  endif
#endif
    wsf_level = wsf_max_level;
}

/* Returns the level now in use (never above what the CPU has). */
static inline int wsf_set_level(int level)
{
    if (level < 0) level = 0;
    wsf_level = level < wsf_max_level ? level : wsf_max_level;
    return wsf_level;
}

/* ---- masking ------------------------------------------------------------ */

/* The 4 key bytes as they apply from key position `phase` on, as one word
 * (memcpy keeps the byte order, so this is endian-neutral). */
static inline uint32_t wsf_key32(const unsigned char *key, size_t phase)
{
    unsigned char r[4];
    uint32_t w;
    r[0] = key[phase & 3];
    r[1] = key[(phase + 1) & 3];
    r[2] = key[(phase + 2) & 3];
    r[3] = key[(phase + 3) & 3];
    memcpy(&w, r, 4);
    return w;
}

/* Bytes [i, n) one at a time, then 8 at a time, key phase `phase` at byte 0. */
static inline void wsf_mask_words(unsigned char *dst, const unsigned char *src,
                                  size_t i, size_t n, const unsigned char *key,
                                  size_t phase)
{
    if (n - i >= 8) {
        uint64_t k;
        uint32_t k32 = wsf_key32(key, phase + i);
        memcpy(&k, &k32, 4);
        memcpy((unsigned char *)&k + 4, &k32, 4);
        for (; i + 32 <= n; i += 32) {
            uint64_t a, b, c, d;
            memcpy(&a, src + i, 8);
            memcpy(&b, src + i + 8, 8);
            memcpy(&c, src + i + 16, 8);
            memcpy(&d, src + i + 24, 8);
            a ^= k; b ^= k; c ^= k; d ^= k;
            memcpy(dst + i, &a, 8);
            memcpy(dst + i + 8, &b, 8);
            memcpy(dst + i + 16, &c, 8);
            memcpy(dst + i + 24, &d, 8);
        }
        for (; i + 8 <= n; i += 8) {
            uint64_t a;
            memcpy(&a, src + i, 8);
            a ^= k;
            memcpy(dst + i, &a, 8);
        }
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ key[(phase + i) & 3];
}

/* Large buffers: first bring dst to a `align`-byte boundary, byte by byte, so
 * the vector stores never split a cache line. Returns the head length. */
static inline size_t wsf_head(unsigned char *dst, const unsigned char *src,
                              size_t n, const unsigned char *key, size_t phase,
                              size_t align)
{
    size_t head = (size_t)(-(uintptr_t)dst) & (align - 1), i;
    if (head > n) head = n;
    for (i = 0; i < head; i++)
        dst[i] = src[i] ^ key[(phase + i) & 3];
    return head;
}

#define WSF_ALIGN_FROM 512  /* below this, unaligned vectors are cheaper */

#if defined(WSF_X86)
static void wsf_mask_sse2(unsigned char *dst, const unsigned char *src, size_t n,
                          const unsigned char *key, size_t phase)
{
    size_t i = 0;
    if (n >= 16) {
        __m128i k;
        if (n >= WSF_ALIGN_FROM)
            i = wsf_head(dst, src, n, key, phase, 16);
        k = _mm_set1_epi32((int)wsf_key32(key, phase + i));
        for (; i + 64 <= n; i += 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
            __m128i d = _mm_loadu_si128((const __m128i *)(src + i + 48));
            _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
            _mm_storeu_si128((__m128i *)(dst + i + 16), _mm_xor_si128(b, k));
            _mm_storeu_si128((__m128i *)(dst + i + 32), _mm_xor_si128(c, k));
            _mm_storeu_si128((__m128i *)(dst + i + 48), _mm_xor_si128(d, k));
        }
        for (; i + 16 <= n; i += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
        }
    }
    wsf_mask_words(dst, src, i, n, key, phase);
}
#endif

#if defined(WSF_HAVE_AVX2)
WSF_AVX2_FN
static void wsf_mask_avx2(unsigned char *dst, const unsigned char *src, size_t n,
                          const unsigned char *key, size_t phase)
{
    size_t i = 0;
    if (n >= 32) {
        __m256i k;
        if (n >= WSF_ALIGN_FROM)
            i = wsf_head(dst, src, n, key, phase, 32);
        k = _mm256_set1_epi32((int)wsf_key32(key, phase + i));
        for (; i + 128 <= n; i += 128) {
            __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
            __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
            __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
            __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
            _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
            _mm256_storeu_si256((__m256i *)(dst + i + 32), _mm256_xor_si256(b, k));
            _mm256_storeu_si256((__m256i *)(dst + i + 64), _mm256_xor_si256(c, k));
            _mm256_storeu_si256((__m256i *)(dst + i + 96), _mm256_xor_si256(d, k));
        }
        for (; i + 32 <= n; i += 32) {
            __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
            _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
        }
        if (i + 16 <= n) {
            __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
            _mm_storeu_si128((__m128i *)(dst + i),
                             _mm_xor_si128(a, _mm256_castsi256_si128(k)));
            i += 16;
        }
    }
    wsf_mask_words(dst, src, i, n, key, phase);
}
#endif

/* dst[i] = src[i] ^ key[(phase + i) % 4] for i in [0, n); dst may equal src
 * (in place) but must not otherwise overlap it. */
static inline void wsf_mask(unsigned char *dst, const unsigned char *src, size_t n,
                            const unsigned char *key, size_t phase)
{
#if defined(WSF_HAVE_AVX2)
    if (wsf_level >= 2) { wsf_mask_avx2(dst, src, n, key, phase); return; }
#endif
#if defined(WSF_X86)
    if (wsf_level >= 1) { wsf_mask_sse2(dst, src, n, key, phase); return; }
#endif
    wsf_mask_words(dst, src, 0, n, key, phase);
}

/* ---- ASCII runs ----------------------------------------------------------- */

#define WSF_HI64 UINT64_C(0x8080808080808080)

/* Bytes [i, n) 8 at a time: the index of the first byte >= 0x80, or n. */
static inline size_t wsf_ascii_words(const unsigned char *p, size_t i, size_t n)
{
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & WSF_HI64) {
            unsigned char b[8];
            size_t j;
            memcpy(b, &w, 8);
            for (j = 0; b[j] < 0x80; j++) {}
            return i + j;
        }
    }
    for (; i < n; i++)
        if (p[i] >= 0x80) return i;
    return n;
}

#if defined(WSF_X86)
static size_t wsf_ascii_sse2(const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(p + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(p + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(p + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(p + i + 48));
        __m128i o = _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d));
        if (_mm_movemask_epi8(o)) {
            uint64_t m = (uint64_t)(unsigned)_mm_movemask_epi8(a)
                       | (uint64_t)(unsigned)_mm_movemask_epi8(b) << 16
                       | (uint64_t)(unsigned)_mm_movemask_epi8(c) << 32
                       | (uint64_t)(unsigned)_mm_movemask_epi8(d) << 48;
            return i + WSF_CTZ64(m);
        }
    }
    for (; i + 16 <= n; i += 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(p + i)));
        if (m) return i + WSF_CTZ32(m);
    }
    return wsf_ascii_words(p, i, n);
}
#endif

#if defined(WSF_HAVE_AVX2)
WSF_AVX2_FN
static size_t wsf_ascii_avx2(const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(p + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(p + i + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(p + i + 96));
        __m256i o = _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d));
        if (_mm256_movemask_epi8(o)) {
            uint64_t lo = (uint64_t)(uint32_t)_mm256_movemask_epi8(a)
                        | (uint64_t)(uint32_t)_mm256_movemask_epi8(b) << 32;
            uint64_t hi = (uint64_t)(uint32_t)_mm256_movemask_epi8(c)
                        | (uint64_t)(uint32_t)_mm256_movemask_epi8(d) << 32;
            return lo ? i + WSF_CTZ64(lo) : i + 64 + WSF_CTZ64(hi);
        }
    }
    for (; i + 32 <= n; i += 32) {
        uint32_t m = (uint32_t)_mm256_movemask_epi8(_mm256_loadu_si256((const __m256i *)(p + i)));
        if (m) return i + WSF_CTZ32(m);
    }
    if (i + 16 <= n) {
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(p + i)));
        if (m) return i + WSF_CTZ32(m);
        i += 16;
    }
    return wsf_ascii_words(p, i, n);
}
#endif

/* The length of the ASCII run at the start of p[0, n). */
static inline size_t wsf_ascii_len(const unsigned char *p, size_t n)
{
#if defined(WSF_HAVE_AVX2)
    if (wsf_level >= 2) return wsf_ascii_avx2(p, n);
#endif
#if defined(WSF_X86)
    if (wsf_level >= 1) return wsf_ascii_sse2(p, n);
#endif
    return wsf_ascii_words(p, 0, n);
}

/* ---- UTF-8 automaton -------------------------------------------------------
 *
 * Byte classes (columns):
 *   0: 00..7F   1: 80..8F   2: 90..9F   3: A0..BF   4: C0 C1 F5..FF (never valid)
 *   5: C2..DF   6: E0       7: E1..EC EE EF          8: ED
 *   9: F0       10: F1..F3  11: F4
 * States (rows, premultiplied by 12):
 *   ACCEPT   between characters
 *   C1/C2/C3 that many continuation bytes 80..BF still wanted
 *   E0  wants A0..BF then 1 (no overlong 3-byte form)
 *   ED  wants 80..9F then 1 (no surrogates U+D800..U+DFFF)
 *   F0  wants 90..BF then 2 (no overlong 4-byte form)
 *   F4  wants 80..8F then 2 (nothing above U+10FFFF)
 *   REJECT  for good; the byte that led here is the one that proves the error
 *           (the Unicode "maximal subpart" rule, as CPython's decoder reports).
 */
#define WSF_UTF8_ACCEPT 0
#define WSF_U_C1 12
#define WSF_U_C2 24
#define WSF_U_E0 36
#define WSF_U_ED 48
#define WSF_U_C3 60
#define WSF_U_F0 72
#define WSF_U_F4 84
#define WSF_UTF8_REJECT 96
#define WSF_R WSF_UTF8_REJECT

static const unsigned char wsf_utf8_next[108] = {
    /*           00  80..8F   90..9F   A0..BF   bad    C2..DF    E0        E1..EF    ED        F0        F1..F3    F4 */
    /* ACCEPT */ 0,  WSF_R,   WSF_R,   WSF_R,   WSF_R, WSF_U_C1, WSF_U_E0, WSF_U_C2, WSF_U_ED, WSF_U_F0, WSF_U_C3, WSF_U_F4,
    /* C1 */ WSF_R,  0,       0,       0,       WSF_R, WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,
    /* C2 */ WSF_R,  WSF_U_C1, WSF_U_C1, WSF_U_C1, WSF_R, WSF_R,  WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,
    /* E0 */ WSF_R,  WSF_R,   WSF_R,   WSF_U_C1, WSF_R, WSF_R,   WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,
    /* ED */ WSF_R,  WSF_U_C1, WSF_U_C1, WSF_R,  WSF_R, WSF_R,   WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,
    /* C3 */ WSF_R,  WSF_U_C2, WSF_U_C2, WSF_U_C2, WSF_R, WSF_R,  WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,
    /* F0 */ WSF_R,  WSF_R,   WSF_U_C2, WSF_U_C2, WSF_R, WSF_R,  WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,
    /* F4 */ WSF_R,  WSF_U_C2, WSF_R,  WSF_R,   WSF_R, WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,
    /* REJ */ WSF_R, WSF_R,   WSF_R,   WSF_R,   WSF_R, WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,    WSF_R,
};

static unsigned char wsf_utf8_class[256];

static inline void wsf_utf8_init(void)
{
    int c;
    for (c = 0; c < 256; c++) {
        unsigned char k;
        if (c < 0x80) k = 0;
        else if (c < 0x90) k = 1;
        else if (c < 0xA0) k = 2;
        else if (c < 0xC0) k = 3;
        else if (c < 0xC2) k = 4;
        else if (c < 0xE0) k = 5;
        else if (c == 0xE0) k = 6;
        else if (c == 0xED) k = 8;
        else if (c < 0xF0) k = 7;
        else if (c == 0xF0) k = 9;
        else if (c < 0xF4) k = 10;
        else if (c == 0xF4) k = 11;
        else k = 4;
        wsf_utf8_class[c] = k;
    }
}

/* Run the automaton over p[0, n) from *state. Returns n when no byte was
 * rejected, else the index of the rejecting byte (and *state is REJECT).
 * *state is left ACCEPT or mid-character for the next call.
 *
 * Between characters, ASCII runs are skipped with vectors and whole valid
 * multi-byte characters are taken at once; anything else (an invalid byte, a
 * character cut off by the end of the buffer or begun in an earlier call)
 * goes through the automaton one byte at a time, which finds the exact byte
 * that proves an error. */
static size_t wsf_utf8_check(const unsigned char *p, size_t n, unsigned char *state)
{
    size_t i = 0;
    unsigned s = *state;
    if (s == WSF_UTF8_REJECT) return 0;
    for (;;) {
        while (s != WSF_UTF8_ACCEPT) {
            if (i >= n) { *state = (unsigned char)s; return n; }
            s = wsf_utf8_next[s + wsf_utf8_class[p[i]]];
            if (WSF_UNLIKELY(s == WSF_UTF8_REJECT)) { *state = (unsigned char)s; return i; }
            i++;
        }
        while (i < n) {
            unsigned c = p[i];
            if (c < 0x80) {
                if (i + 1 < n && p[i + 1] >= 0x80) { i++; continue; }  /* a lone space */
                i += wsf_ascii_len(p + i, n - i);
                continue;
            }
            if (c < 0xE0) {                     /* C2..DF 80..BF */
                if (c >= 0xC2 && i + 1 < n && (p[i + 1] & 0xC0) == 0x80) { i += 2; continue; }
            } else if (c < 0xF0) {              /* E0 A0..BF | E1..EC,EE,EF 80..BF | ED 80..9F; then 80..BF */
                if (i + 2 < n) {
                    unsigned c1 = p[i + 1];
                    unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
                    if (c1 >= lo && c1 <= hi && (p[i + 2] & 0xC0) == 0x80) { i += 3; continue; }
                }
            } else if (c <= 0xF4) {             /* F0 90..BF | F1..F3 80..BF | F4 80..8F; then 2x 80..BF */
                if (i + 3 < n) {
                    unsigned c1 = p[i + 1];
                    unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
                    if (c1 >= lo && c1 <= hi && (p[i + 2] & 0xC0) == 0x80
                        && (p[i + 3] & 0xC0) == 0x80) { i += 4; continue; }
                }
            }
            break;
        }
        if (i >= n) { *state = WSF_UTF8_ACCEPT; return n; }
        s = wsf_utf8_next[WSF_UTF8_ACCEPT + wsf_utf8_class[p[i]]];
        if (WSF_UNLIKELY(s == WSF_UTF8_REJECT)) { *state = (unsigned char)s; return i; }
        i++;
    }
}

#endif /* WSFAST_SIMD_H */
