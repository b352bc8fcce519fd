/* scrypt(header, header, N=1024, r=1, p=1, 32 bytes), Litecoin's proof of work, for many headers at
   once (RFC 7914; written here from the RFC, not taken from any miner).

   Why our own: the proxy checks every share with one scrypt, and hashlib.scrypt (OpenSSL) runs one
   hash at a time in plain integer code, ~3.1 kH/s per core here against ~19-20 kH/s for cpuminer's
   hand-written AVX2. Nearly all of scrypt is salsa20/8 on 16 32-bit words, 2048 times per hash,
   each depending on the last, so one hash leaves a core's vector units idle; several hashes side by
   side fill them.

   Layout ("rows"): a salsa block's 16 words are held as 4 rows of 4 words on the diagonals
   (a = x0 x5 x10 x15, b = x4 x9 x14 x3, c = x8 x13 x2 x7, d = x12 x1 x6 x11), so a column round is
   4 vector steps and a row round is the same 4 steps after rotating b, c and d by one, two and three
   words. A 128-bit row holds one hash; a 256-bit register holds the rows of 2 hashes, a 512-bit one
   of 4. SETS independent registers per row are worked in turn, so while one step waits for its
   result (add, rotate, xor: each needs the last) the core runs the others'. Each hash keeps its own
   contiguous 128 KiB scratchpad in the same diagonal order, so a random read is 128 bytes (2 cache
   lines), not words spread across the other lanes' data.

   AVX-512 adds 32 registers and a rotate instruction (vprold: 1 instruction where AVX2 needs 3).
   Every SIMD function carries its own target attribute and is only called after
   __builtin_cpu_supports says the CPU (and OS) runs it: the module builds with the compiler's
   default flags and runs anywhere, with the portable scalar code as the fallback.

   PBKDF2-HMAC-SHA256 at both ends (~17 SHA-256 blocks) uses OpenSSL's SHA-256 (SHA-NI where the
   CPU has it) one hash at a time: under 5 us (hashlib's pbkdf2_hmac for the same two calls, with
   its per-call overheads), against ~25 us of CPU for a whole hash with AVX-512. Hashing the lanes'
   SHA-256 side by side too could win part of that back; not done. */

#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_scrypt.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SCRYPT_X86 1
#include <immintrin.h>
#endif

#define N 1024          /* scrypt's cost: scratchpad blocks per hash */
#define BLOCK_WORDS 32  /* 2 * r salsa blocks of 16 words */
#define PAD_WORDS ((size_t)N * BLOCK_WORDS)
#define MAX_LANES 8     /* hashes of the widest core (AVX-512: 2 sets of 4) */

static inline uint32_t
load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void
store_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* ---- PBKDF2-HMAC-SHA256 with one iteration, the header as password and salt ---- */

typedef struct {
    SHA256_CTX inner; /* after the key xor ipad block */
    SHA256_CTX outer; /* after the key xor opad block */
} hmac_key;

static void
hmac_key_init(hmac_key *key, const unsigned char *secret, size_t length)
{
    unsigned char block[64] = {0};
    unsigned char pad[64];

    if (length > sizeof(block)) {
        SHA256(secret, length, block);
    }
    else {
        memcpy(block, secret, length);
    }
    for (size_t i = 0; i < sizeof(pad); i++) {
        pad[i] = block[i] ^ 0x36;
    }
    SHA256_Init(&key->inner);
    SHA256_Update(&key->inner, pad, sizeof(pad));
    for (size_t i = 0; i < sizeof(pad); i++) {
        pad[i] = block[i] ^ 0x5c;
    }
    SHA256_Init(&key->outer);
    SHA256_Update(&key->outer, pad, sizeof(pad));
}

static void
hmac_final(const hmac_key *key, SHA256_CTX *inner, unsigned char out[32])
{
    unsigned char digest[32];
    SHA256_CTX outer = key->outer;

    SHA256_Final(digest, inner);
    SHA256_Update(&outer, digest, sizeof(digest));
    SHA256_Final(out, &outer);
}

/* X = PBKDF2(header, header, 1, 128 bytes) as 32 little-endian words; keeps the HMAC key for the end. */
static void
scrypt_prologue(const unsigned char *header, hmac_key *key, uint32_t X[BLOCK_WORDS])
{
    SHA256_CTX salted;

    hmac_key_init(key, header, SCRYPT_HEADER_BYTES);
    salted = key->inner;
    SHA256_Update(&salted, header, SCRYPT_HEADER_BYTES);
    for (unsigned i = 0; i < 4; i++) {
        unsigned char counter[4] = {0, 0, 0, (unsigned char)(i + 1)};
        unsigned char block[32];
        SHA256_CTX inner = salted;

        SHA256_Update(&inner, counter, sizeof(counter));
        hmac_final(key, &inner, block);
        for (unsigned w = 0; w < 8; w++) {
            X[i * 8 + w] = load_le32(block + 4 * w);
        }
    }
}

/* out = PBKDF2(header, X, 1, 32 bytes). */
static void
scrypt_epilogue(const hmac_key *key, const uint32_t X[BLOCK_WORDS], unsigned char out[SCRYPT_HASH_BYTES])
{
    unsigned char salt[4 * BLOCK_WORDS + 4];
    SHA256_CTX inner = key->inner;

    for (unsigned w = 0; w < BLOCK_WORDS; w++) {
        store_le32(salt + 4 * w, X[w]);
    }
    salt[4 * BLOCK_WORDS] = 0;
    salt[4 * BLOCK_WORDS + 1] = 0;
    salt[4 * BLOCK_WORDS + 2] = 0;
    salt[4 * BLOCK_WORDS + 3] = 1;
    SHA256_Update(&inner, salt, sizeof(salt));
    hmac_final(key, &inner, out);
}

/* ---- Portable scalar core: one hash, words in their natural order ---- */

#define ROTL32(v, n) (((v) << (n)) | ((v) >> (32 - (n))))

static void
salsa20_8(uint32_t B[16])
{
    uint32_t x[16];

    memcpy(x, B, sizeof(x));
    for (int i = 0; i < 8; i += 2) {
        /* columns */
        x[4] ^= ROTL32(x[0] + x[12], 7);   x[8] ^= ROTL32(x[4] + x[0], 9);
        x[12] ^= ROTL32(x[8] + x[4], 13);  x[0] ^= ROTL32(x[12] + x[8], 18);
        x[9] ^= ROTL32(x[5] + x[1], 7);    x[13] ^= ROTL32(x[9] + x[5], 9);
        x[1] ^= ROTL32(x[13] + x[9], 13);  x[5] ^= ROTL32(x[1] + x[13], 18);
        x[14] ^= ROTL32(x[10] + x[6], 7);  x[2] ^= ROTL32(x[14] + x[10], 9);
        x[6] ^= ROTL32(x[2] + x[14], 13);  x[10] ^= ROTL32(x[6] + x[2], 18);
        x[3] ^= ROTL32(x[15] + x[11], 7);  x[7] ^= ROTL32(x[3] + x[15], 9);
        x[11] ^= ROTL32(x[7] + x[3], 13);  x[15] ^= ROTL32(x[11] + x[7], 18);
        /* rows */
        x[1] ^= ROTL32(x[0] + x[3], 7);    x[2] ^= ROTL32(x[1] + x[0], 9);
        x[3] ^= ROTL32(x[2] + x[1], 13);   x[0] ^= ROTL32(x[3] + x[2], 18);
        x[6] ^= ROTL32(x[5] + x[4], 7);    x[7] ^= ROTL32(x[6] + x[5], 9);
        x[4] ^= ROTL32(x[7] + x[6], 13);   x[5] ^= ROTL32(x[4] + x[7], 18);
        x[11] ^= ROTL32(x[10] + x[9], 7);  x[8] ^= ROTL32(x[11] + x[10], 9);
        x[9] ^= ROTL32(x[8] + x[11], 13);  x[10] ^= ROTL32(x[9] + x[8], 18);
        x[12] ^= ROTL32(x[15] + x[14], 7); x[13] ^= ROTL32(x[12] + x[15], 9);
        x[14] ^= ROTL32(x[13] + x[12], 13); x[15] ^= ROTL32(x[14] + x[13], 18);
    }
    for (int i = 0; i < 16; i++) {
        B[i] += x[i];
    }
}

static void
blockmix_scalar(uint32_t X[BLOCK_WORDS])
{
    for (int i = 0; i < 16; i++) {
        X[i] ^= X[16 + i];
    }
    salsa20_8(X);
    for (int i = 0; i < 16; i++) {
        X[16 + i] ^= X[i];
    }
    salsa20_8(X + 16);
}

/* XI: one hash's 32 words in natural order; V: its scratchpad. */
static void
core_scalar(uint32_t *XI, uint32_t *V)
{
    for (size_t i = 0; i < N; i++) {
        memcpy(V + i * BLOCK_WORDS, XI, BLOCK_WORDS * sizeof(uint32_t));
        blockmix_scalar(XI);
    }
    for (size_t i = 0; i < N; i++) {
        const uint32_t *block = V + (size_t)(XI[16] & (N - 1)) * BLOCK_WORDS;

        for (int w = 0; w < BLOCK_WORDS; w++) {
            XI[w] ^= block[w];
        }
        blockmix_scalar(XI);
    }
}

/* ---- SIMD cores, generic over the register width (16, 32 or 64 bytes) and the sets in flight ----

   XI holds the group's state interleaved as [set][row 0..7][hash in register][4 words], so each
   register is one aligned load; rows 0-3 are the first salsa block (a b c d), 4-7 the second.
   Hash h of the group (set h / H, place h % H) has its scratchpad at V + h * PAD_WORDS. */

#ifdef SCRYPT_X86

/* Lane rotations within each 128-bit row: result[k] = v[mask[k]]. */
#define M1230_16 {1, 2, 3, 0}
#define M2301_16 {2, 3, 0, 1}
#define M3012_16 {3, 0, 1, 2}
#define M1230_32 {1, 2, 3, 0, 5, 6, 7, 4}
#define M2301_32 {2, 3, 0, 1, 6, 7, 4, 5}
#define M3012_32 {3, 0, 1, 2, 7, 4, 5, 6}
#define M1230_64 {1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12}
#define M2301_64 {2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13}
#define M3012_64 {3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14}

/* One register's rows out to the scratchpads of its H hashes (stride: words between two hashes'
   pads), and one register's rows in from H places. */
#define STORE_ROWS_16(p, stride, v) _mm_storeu_si128((__m128i *)(p), (__m128i)(v))
#define STORE_ROWS_32(p, stride, v) do { \
        _mm_storeu_si128((__m128i *)(p), _mm256_castsi256_si128((__m256i)(v))); \
        _mm_storeu_si128((__m128i *)((p) + (stride)), _mm256_extracti128_si256((__m256i)(v), 1)); \
    } while (0)
#define STORE_ROWS_64(p, stride, v) do { \
        _mm_storeu_si128((__m128i *)(p), _mm512_castsi512_si128((__m512i)(v))); \
        _mm_storeu_si128((__m128i *)((p) + (stride)), _mm512_extracti32x4_epi32((__m512i)(v), 1)); \
        _mm_storeu_si128((__m128i *)((p) + 2 * (stride)), _mm512_extracti32x4_epi32((__m512i)(v), 2)); \
        _mm_storeu_si128((__m128i *)((p) + 3 * (stride)), _mm512_extracti32x4_epi32((__m512i)(v), 3)); \
    } while (0)
#define LOAD_ROWS_16(ptr, off) _mm_loadu_si128((const __m128i *)((ptr)[0] + (off)))
#define LOAD_ROWS_32(ptr, off) _mm256_inserti128_si256( \
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)((ptr)[0] + (off)))), \
        _mm_loadu_si128((const __m128i *)((ptr)[1] + (off))), 1)
#define LOAD_ROWS_64(ptr, off) _mm512_inserti64x4( \
        _mm512_castsi256_si512(LOAD_ROWS_32(ptr, off)), LOAD_ROWS_32((ptr) + 2, off), 1)

#define VROTL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define EACH_SET _Pragma("GCC unroll 8") for (int s = 0; s < SETS; s++)

/* salsa20/8 of rows ROW..ROW+3 of every set, in place. */
#define SALSA_SETS(VB, ROW) do { \
        vec a[SETS], b[SETS], c[SETS], d[SETS]; \
        EACH_SET { a[s] = x[s][ROW]; b[s] = x[s][ROW + 1]; c[s] = x[s][ROW + 2]; d[s] = x[s][ROW + 3]; } \
        for (int round = 0; round < 4; round++) { \
            EACH_SET b[s] ^= VROTL(a[s] + d[s], 7); \
            EACH_SET c[s] ^= VROTL(b[s] + a[s], 9); \
            EACH_SET d[s] ^= VROTL(c[s] + b[s], 13); \
            EACH_SET a[s] ^= VROTL(d[s] + c[s], 18); \
            EACH_SET { \
                b[s] = __builtin_shuffle(b[s], (vec)M3012_##VB); \
                c[s] = __builtin_shuffle(c[s], (vec)M2301_##VB); \
                d[s] = __builtin_shuffle(d[s], (vec)M1230_##VB); \
            } \
            EACH_SET d[s] ^= VROTL(a[s] + b[s], 7); \
            EACH_SET c[s] ^= VROTL(d[s] + a[s], 9); \
            EACH_SET b[s] ^= VROTL(c[s] + d[s], 13); \
            EACH_SET a[s] ^= VROTL(b[s] + c[s], 18); \
            EACH_SET { \
                b[s] = __builtin_shuffle(b[s], (vec)M1230_##VB); \
                c[s] = __builtin_shuffle(c[s], (vec)M2301_##VB); \
                d[s] = __builtin_shuffle(d[s], (vec)M3012_##VB); \
            } \
        } \
        EACH_SET { x[s][ROW] += a[s]; x[s][ROW + 1] += b[s]; x[s][ROW + 2] += c[s]; x[s][ROW + 3] += d[s]; } \
    } while (0)

#define BLOCKMIX_SETS(VB) do { \
        EACH_SET for (int r = 0; r < 4; r++) x[s][r] ^= x[s][r + 4]; \
        SALSA_SETS(VB, 0); \
        EACH_SET for (int r = 0; r < 4; r++) x[s][r + 4] ^= x[s][r]; \
        SALSA_SETS(VB, 4); \
    } while (0)

#define SIMD_CORE(NAME, TARGET, VB, SETS_) \
    __attribute__((target(TARGET))) static void \
    NAME(uint32_t *XI, uint32_t *V) \
    { \
        typedef uint32_t vec __attribute__((vector_size(VB))); \
        enum { SETS = SETS_, H = (VB) / 16 }; \
        vec x[SETS][8]; \
        EACH_SET for (int r = 0; r < 8; r++) memcpy(&x[s][r], XI + (s * 8 + r) * (VB / 4), VB); \
        for (size_t i = 0; i < N; i++) { \
            EACH_SET for (int r = 0; r < 8; r++) \
                STORE_ROWS_##VB(V + (s * H * PAD_WORDS) + i * BLOCK_WORDS + r * 4, PAD_WORDS, x[s][r]); \
            BLOCKMIX_SETS(VB); \
        } \
        for (size_t i = 0; i < N; i++) { \
            EACH_SET { \
                const uint32_t *ptr[H]; \
                for (int h = 0; h < H; h++) \
                    ptr[h] = V + (s * H + h) * PAD_WORDS + (size_t)(x[s][4][h * 4] & (N - 1)) * BLOCK_WORDS; \
                for (int r = 0; r < 8; r++) x[s][r] ^= (vec)LOAD_ROWS_##VB(ptr, r * 4); \
            } \
            BLOCKMIX_SETS(VB); \
        } \
        EACH_SET for (int r = 0; r < 8; r++) memcpy(XI + (s * 8 + r) * (VB / 4), &x[s][r], VB); \
    }

SIMD_CORE(core_avx2_x1, "avx2", 16, 1)
SIMD_CORE(core_avx2_y1, "avx2", 32, 1)
SIMD_CORE(core_avx2_y2, "avx2", 32, 2)
SIMD_CORE(core_avx2_y3, "avx2", 32, 3)

#define AVX512 "avx2,avx512f,avx512vl"
SIMD_CORE(core_avx512_x1, AVX512, 16, 1)
SIMD_CORE(core_avx512_y1, AVX512, 32, 1)
SIMD_CORE(core_avx512_z1, AVX512, 64, 1)
SIMD_CORE(core_avx512_z2, AVX512, 64, 2)

#endif /* SCRYPT_X86 */

/* ---- Choosing and driving the cores ---- */

typedef void (*core_fn)(uint32_t *XI, uint32_t *V);

typedef struct {
    int lanes;      /* hashes per call */
    int row_hashes; /* hashes per register (rows interleaved this way in XI); 0: scalar, natural order */
    core_fn fn;
} core;

typedef struct {
    const char *name;
    const core *cores; /* widest first, ending with a 1-lane core */
} impl;

static const core scalar_cores[] = {{1, 0, core_scalar}};

#ifdef SCRYPT_X86
/* The widest of each was chosen by measurement (2-vCPU Xeon with AVX-512, shared): AVX2 3 sets
   (6 hashes) ~19-20 kH/s per core, 2 sets 16-17, 4 sets no faster (registers spill); AVX-512 2 sets
   (8 hashes, 1 MiB of scratchpads) 27-31, 1 set 27-28, 3 sets (1.5 MiB, near the 2 MiB L2) within
   the noise of 2. */
static const core avx2_cores[] = {
    {6, 2, core_avx2_y3}, {4, 2, core_avx2_y2}, {2, 2, core_avx2_y1}, {1, 1, core_avx2_x1},
};
static const core avx512_cores[] = {
    {8, 4, core_avx512_z2}, {4, 4, core_avx512_z1}, {2, 2, core_avx512_y1}, {1, 1, core_avx512_x1},
};
#endif

static const impl all_impls[] = {
#ifdef SCRYPT_X86
    {"avx512", avx512_cores},
    {"avx2", avx2_cores},
#endif
    {"scalar", scalar_cores},
};
#define ALL_IMPLS (sizeof(all_impls) / sizeof(all_impls[0]))

static const impl *usable[ALL_IMPLS];
static const char *usable_names[ALL_IMPLS + 1];
static int usable_count = -1;

static int
cpu_runs(const char *name)
{
#ifdef SCRYPT_X86
    if (strcmp(name, "avx512") == 0) {
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f")
               && __builtin_cpu_supports("avx512vl");
    }
    if (strcmp(name, "avx2") == 0) {
        return __builtin_cpu_supports("avx2");
    }
#endif
    return strcmp(name, "scalar") == 0;
}

static void
find_usable(void)
{
    /* Called under the GIL at import (mining/_hashes.c), before any thread can hash. */
    if (usable_count >= 0) {
        return;
    }
#ifdef SCRYPT_X86
    __builtin_cpu_init();
#endif
    int count = 0;
    for (size_t i = 0; i < ALL_IMPLS; i++) {
        if (cpu_runs(all_impls[i].name)) {
            usable[count] = &all_impls[i];
            usable_names[count] = all_impls[i].name;
            count++;
        }
    }
    usable_names[count] = NULL;
    usable_count = count;
}

const char *const *
scrypt_impls(void)
{
    find_usable();
    return usable_names;
}

int
scrypt_impl_index(const char *name)
{
    find_usable();
    for (int i = 0; i < usable_count; i++) {
        if (strcmp(usable[i]->name, name) == 0) {
            return i;
        }
    }
    return -1;
}

/* Word p of the diagonal layout holds natural word DIAGONAL[p] (per 16-word salsa block). */
static const unsigned char DIAGONAL[16] = {0, 5, 10, 15, 4, 9, 14, 3, 8, 13, 2, 7, 12, 1, 6, 11};

static size_t
interleaved(int hash, int word, int row_hashes)
{
    int set = hash / row_hashes, place = hash % row_hashes, row = word / 4;
    return ((size_t)(set * 8 + row) * row_hashes + place) * 4 + word % 4;
}

static void
hash_group(const core *c, const unsigned char *headers, unsigned char *out, uint32_t *XI, uint32_t *V)
{
    hmac_key keys[MAX_LANES];
    uint32_t X[BLOCK_WORDS];

    for (int h = 0; h < c->lanes; h++) {
        scrypt_prologue(headers + (size_t)h * SCRYPT_HEADER_BYTES, &keys[h], X);
        if (c->row_hashes == 0) {
            memcpy(XI, X, sizeof(X));
            continue;
        }
        for (int p = 0; p < BLOCK_WORDS; p++) {
            XI[interleaved(h, p, c->row_hashes)] = X[(p & 16) + DIAGONAL[p & 15]];
        }
    }
    c->fn(XI, V);
    for (int h = 0; h < c->lanes; h++) {
        if (c->row_hashes == 0) {
            memcpy(X, XI, sizeof(X));
        }
        else {
            for (int p = 0; p < BLOCK_WORDS; p++) {
                X[(p & 16) + DIAGONAL[p & 15]] = XI[interleaved(h, p, c->row_hashes)];
            }
        }
        scrypt_epilogue(&keys[h], X, out + (size_t)h * SCRYPT_HASH_BYTES);
    }
}

int
scrypt_many(int impl_index, const unsigned char *headers, unsigned char *out, size_t count)
{
    find_usable();
    if (count == 0) {
        return 0;
    }
    const core *cores = usable[impl_index]->cores;
    size_t lanes = (size_t)cores[0].lanes < count ? (size_t)cores[0].lanes : count;
    /* One allocation per call: glibc keeps a freed block of this size for the next call, so the
       pages are not faulted in again. 64-byte aligned for whole-register loads of XI. */
    size_t words = lanes * PAD_WORDS + MAX_LANES * BLOCK_WORDS;
    uint32_t *V = aligned_alloc(64, words * sizeof(uint32_t));
    if (V == NULL) {
        return -1;
    }
    uint32_t *XI = V + lanes * PAD_WORDS;

    while (count > 0) {
        const core *c = cores;
        while ((size_t)c->lanes > count) {
            c++; /* the last core has 1 lane */
        }
        hash_group(c, headers, out, XI, V);
        headers += (size_t)c->lanes * SCRYPT_HEADER_BYTES;
        out += (size_t)c->lanes * SCRYPT_HASH_BYTES;
        count -= (size_t)c->lanes;
    }
    free(V);
    return 0;
}
