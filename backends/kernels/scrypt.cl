/*
 * scrypt(N=1024, r=1, p=1, dkLen=32) proof of work for 80-byte block headers, salted with themselves.
 *
 * Each work-item hashes LANES consecutive nonces at once, one nonce per vector lane, so that a CPU
 * device runs the whole salsa/sha pipeline in SIMD registers; LANES=1 is the usual GPU shape, one
 * nonce per work-item. LOOKUP_GAP=g keeps every g-th scratchpad row and recomputes the others,
 * trading compute for memory (a GPU with more work-items than memory wants it; a CPU does not).
 *
 * Build options: -D LANES=1|2|4|8|16 -D LOOKUP_GAP=1|2|4|8...
 *
 * job (constant, 32 words): [0..18] header words 0..18 as SHA-256 reads them (big-endian),
 * [24..31] the target as little-endian 32-bit limbs (limb 7 most significant). A nonce is a
 * candidate when hash <= target, the 32-byte result read as a little-endian 256-bit integer, as
 * Litecoin does. The nonce is header word 19, little-endian on the wire.
 * out: out[0] counts candidates; out[1 .. max_out] receive their nonces (the host sizes max_out to
 * the nonces of a launch, so none is ever lost).
 */

#ifndef LANES
#define LANES 1
#endif
#ifndef LOOKUP_GAP
#define LOOKUP_GAP 1
#endif

#define SCRYPT_N 1024
#define ROWS (SCRYPT_N / LOOKUP_GAP)
#define ROW_WORDS 32

#if LANES == 1
typedef uint vu;
#define LANE(v, c) (v)
#define FOR_LANES(M) M(0, 0)
#elif LANES == 2
typedef uint2 vu;
#define as_vu as_uint2
#define FOR_LANES(M) M(0, 0) M(1, 1)
#elif LANES == 4
typedef uint4 vu;
#define as_vu as_uint4
#define FOR_LANES(M) M(0, 0) M(1, 1) M(2, 2) M(3, 3)
#elif LANES == 8
typedef uint8 vu;
#define as_vu as_uint8
#define FOR_LANES(M) M(0, 0) M(1, 1) M(2, 2) M(3, 3) M(4, 4) M(5, 5) M(6, 6) M(7, 7)
#elif LANES == 16
typedef uint16 vu;
#define as_vu as_uint16
#define FOR_LANES(M) M(0, 0) M(1, 1) M(2, 2) M(3, 3) M(4, 4) M(5, 5) M(6, 6) M(7, 7) \
                     M(8, 8) M(9, 9) M(10, a) M(11, b) M(12, c) M(13, d) M(14, e) M(15, f)
#else
#error "LANES must be 1, 2, 4, 8 or 16"
#endif
#ifndef LANE
#define LANE(v, c) ((v).s##c)
#endif

#if (SCRYPT_N % LOOKUP_GAP) != 0
#error "LOOKUP_GAP must divide 1024"
#endif

/* Shifts and masks rather than the rotate()/bitselect() builtins: PoCL warns that it passes uint16
 * builtin arguments with a changed ABI, and LLVM finds the same rotates in these patterns anyway. */
#define ROTL(x, n) (((x) << (n)) | ((x) >> (32u - (n))))
#define BSWAP(x) (ROTL((x) & (vu)0x00FF00FFu, 24u) | ROTL((x) & (vu)0xFF00FF00u, 8u))

/* ---------------------------------------------------------------------------------- SHA-256 */

__constant uint K256[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

__constant uint SHA256_IV[8] = {
    0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
};

#define ROTR(x, n) ROTL((x), 32u - (n))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3u))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10u))
#define CH(e, f, g) ((g) ^ ((e) & ((f) ^ (g))))
#define MAJ(a, b, c) (((a) & (b)) | ((c) & ((a) | (b))))

/* One compression of block w (clobbered) into state s. */
inline void sha256_block(vu *s, vu *w)
{
    vu a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
#pragma unroll
    for (int i = 0; i < 64; i++) {
        if (i >= 16)
            w[i & 15] += SSIG1(w[(i - 2) & 15]) + w[(i - 7) & 15] + SSIG0(w[(i - 15) & 15]);
        vu t1 = h + BSIG1(e) + CH(e, f, g) + K256[i] + w[i & 15];
        vu t2 = BSIG0(a) + MAJ(a, b, c);
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
}

inline void sha256_init(vu *s)
{
#pragma unroll
    for (int i = 0; i < 8; i++)
        s[i] = SHA256_IV[i];
}

/* The last block of a message whose tail (after the final full block) is `n` words in w[0..n-1]. */
inline void sha256_pad(vu *w, int n, uint total_bytes)
{
    w[n] = 0x80000000u;
#pragma unroll
    for (int i = n + 1; i < 15; i++)
        w[i] = 0u;
    w[15] = total_bytes * 8u;
}

/* ------------------------------------------------------------------------------ Salsa20/8 */

#define QR(a, b, c, d)                        \
    b ^= ROTL(a + d, 7u);               \
    c ^= ROTL(b + a, 9u);               \
    d ^= ROTL(c + b, 13u);              \
    a ^= ROTL(d + c, 18u);

/* B = Salsa20/8(B ^ Bx), the core of BlockMix. */
inline void salsa8(vu *B, const vu *Bx)
{
    vu x[16];
#pragma unroll
    for (int i = 0; i < 16; i++) {
        B[i] ^= Bx[i];
        x[i] = B[i];
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        QR(x[0], x[4], x[8], x[12]);
        QR(x[5], x[9], x[13], x[1]);
        QR(x[10], x[14], x[2], x[6]);
        QR(x[15], x[3], x[7], x[11]);
        QR(x[0], x[1], x[2], x[3]);
        QR(x[5], x[6], x[7], x[4]);
        QR(x[10], x[11], x[8], x[9]);
        QR(x[15], x[12], x[13], x[14]);
    }
#pragma unroll
    for (int i = 0; i < 16; i++)
        B[i] += x[i];
}

/* BlockMix with r = 1: the two 64-byte halves, each mixed with the other. */
inline void block_mix(vu *X)
{
    salsa8(X, X + 16);
    salsa8(X + 16, X);
}

/* ------------------------------------------------------------------------------ scratchpad */

/*
 * With LANES=8 (one AVX2 register) a scratchpad row keeps each lane's 32 words contiguous, and rows
 * move in and out through 8x8 transposes: the second ROMix loop then reads each lane's random row
 * with four vector loads instead of 32 scalar ones: 18.4 instead of 15.1 kH per CPU-second on AVX2.
 * Other widths interleave lanes word by word and gather lane by lane.
 */
#if LANES == 8
#define UNPACKLO32(a, b) (uint8)((a).s0, (b).s0, (a).s1, (b).s1, (a).s4, (b).s4, (a).s5, (b).s5)
#define UNPACKHI32(a, b) (uint8)((a).s2, (b).s2, (a).s3, (b).s3, (a).s6, (b).s6, (a).s7, (b).s7)
#define UNPACKLO64(a, b) (uint8)((a).s0, (a).s1, (b).s0, (b).s1, (a).s4, (a).s5, (b).s4, (b).s5)
#define UNPACKHI64(a, b) (uint8)((a).s2, (a).s3, (b).s2, (b).s3, (a).s6, (a).s7, (b).s6, (b).s7)

/* In place: r[m].s[l] <-> r[l].s[m]. */
inline void transpose8(uint8 *r)
{
    const uint8 t0 = UNPACKLO32(r[0], r[1]), t1 = UNPACKHI32(r[0], r[1]);
    const uint8 t2 = UNPACKLO32(r[2], r[3]), t3 = UNPACKHI32(r[2], r[3]);
    const uint8 t4 = UNPACKLO32(r[4], r[5]), t5 = UNPACKHI32(r[4], r[5]);
    const uint8 t6 = UNPACKLO32(r[6], r[7]), t7 = UNPACKHI32(r[6], r[7]);
    const uint8 u0 = UNPACKLO64(t0, t2), u1 = UNPACKHI64(t0, t2);
    const uint8 u2 = UNPACKLO64(t1, t3), u3 = UNPACKHI64(t1, t3);
    const uint8 u4 = UNPACKLO64(t4, t6), u5 = UNPACKHI64(t4, t6);
    const uint8 u6 = UNPACKLO64(t5, t7), u7 = UNPACKHI64(t5, t7);
    r[0] = (uint8)(u0.lo, u4.lo); r[4] = (uint8)(u0.hi, u4.hi);
    r[1] = (uint8)(u1.lo, u5.lo); r[5] = (uint8)(u1.hi, u5.hi);
    r[2] = (uint8)(u2.lo, u6.lo); r[6] = (uint8)(u2.hi, u6.hi);
    r[3] = (uint8)(u3.lo, u7.lo); r[7] = (uint8)(u3.hi, u7.hi);
}

/* Row layout: lane l's words 8b..8b+7 at row[4l + b]. */
inline void store_row(__global vu *row, const vu *X)
{
#pragma unroll
    for (int b = 0; b < 4; b++) {
        uint8 t[8];
#pragma unroll
        for (int m = 0; m < 8; m++)
            t[m] = X[8 * b + m];
        transpose8(t);
#pragma unroll
        for (int l = 0; l < 8; l++)
            row[4 * l + b] = t[l];
    }
}

/* Y = lane-wise rows: lane l of Y from scratchpad row `idx->s[l]`. */
inline void load_rows(__global const vu *V, const vu *idx, vu *Y)
{
#pragma unroll
    for (int b = 0; b < 4; b++) {
#define LOAD_BLOCK(l, c) Y[8 * b + l] = V[LANE(*idx, c) * ROW_WORDS + 4 * l + b];
        FOR_LANES(LOAD_BLOCK)
#undef LOAD_BLOCK
        transpose8(Y + 8 * b);
    }
}
#else
/* Row layout: word k of lane l at row[k].s[l]. */
inline void store_row(__global vu *row, const vu *X)
{
#pragma unroll
    for (int k = 0; k < ROW_WORDS; k++)
        row[k] = X[k];
}

inline void load_rows(__global const vu *V, const vu *idx, vu *Y)
{
    __global const uint *Vs = (__global const uint *)V;
#define GATHER(l, c)                                                                \
    {                                                                               \
        __global const uint *src = Vs + (size_t)LANE(*idx, c) * ROW_WORDS * LANES + l; \
        _Pragma("unroll") for (int k = 0; k < ROW_WORDS; k++)                       \
            LANE(Y[k], c) = src[k * LANES];                                         \
    }
    FOR_LANES(GATHER)
#undef GATHER
}
#endif

/* ------------------------------------------------------------------------- scrypt stages */

/* PBKDF2-HMAC-SHA256(header, header, 1, 128) into X, keeping the HMAC inner and outer states. */
inline void pbkdf2_head(__constant const uint *job, const vu nonce_be, vu *X, vu *istate, vu *ostate)
{
    vu w[16], key[8], inner[8], st[8];

    /* HMAC key: the 80-byte header is longer than a block, so the key is SHA-256(header). Its first
     * block is the same for every nonce, but recomputing it costs under 0.1% of a scrypt hash. */
    sha256_init(key);
#pragma unroll
    for (int i = 0; i < 16; i++)
        w[i] = job[i];
    sha256_block(key, w);
    w[0] = job[16]; w[1] = job[17]; w[2] = job[18]; w[3] = nonce_be;
    sha256_pad(w, 4, 80);
    sha256_block(key, w);

    sha256_init(istate);
    sha256_init(ostate);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        w[i] = key[i] ^ 0x36363636u;
        w[i + 8] = 0x36363636u;
    }
    sha256_block(istate, w);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        w[i] = key[i] ^ 0x5c5c5c5cu;
        w[i + 8] = 0x5c5c5c5cu;
    }
    sha256_block(ostate, w);

    /* Four blocks T_i = HMAC(header || INT(i)); the header's first block is shared by all four. */
#pragma unroll
    for (int i = 0; i < 8; i++)
        inner[i] = istate[i];
#pragma unroll
    for (int i = 0; i < 16; i++)
        w[i] = job[i];
    sha256_block(inner, w);
    for (uint blk = 1; blk <= 4; blk++) {
#pragma unroll
        for (int i = 0; i < 8; i++)
            st[i] = inner[i];
        w[0] = job[16]; w[1] = job[17]; w[2] = job[18]; w[3] = nonce_be; w[4] = blk;
        sha256_pad(w, 5, 64 + 84);
        sha256_block(st, w);
#pragma unroll
        for (int i = 0; i < 8; i++)
            w[i] = st[i];
        sha256_pad(w, 8, 64 + 32);
#pragma unroll
        for (int i = 0; i < 8; i++)
            st[i] = ostate[i];
        sha256_block(st, w);
        /* scrypt reads the PBKDF2 bytes as little-endian words. */
#pragma unroll
        for (int i = 0; i < 8; i++)
            X[(blk - 1) * 8 + i] = BSWAP(st[i]);
    }
}

/* PBKDF2-HMAC-SHA256(header, X, 1, 32) compared with the target: all-ones lanes where hash <= target. */
inline vu pbkdf2_tail_hits(__constant const uint *job, const vu *X, const vu *istate, const vu *ostate)
{
    vu w[16], st[8];
#pragma unroll
    for (int i = 0; i < 8; i++)
        st[i] = istate[i];
    /* HMAC(X || INT(1)), X back in SHA-256's big-endian word order. */
#pragma unroll
    for (int i = 0; i < 16; i++)
        w[i] = BSWAP(X[i]);
    sha256_block(st, w);
#pragma unroll
    for (int i = 0; i < 16; i++)
        w[i] = BSWAP(X[16 + i]);
    sha256_block(st, w);
    w[0] = 1u;
    sha256_pad(w, 1, 64 + 132);
    sha256_block(st, w);
#pragma unroll
    for (int i = 0; i < 8; i++)
        w[i] = st[i];
    sha256_pad(w, 8, 64 + 32);
#pragma unroll
    for (int i = 0; i < 8; i++)
        st[i] = ostate[i];
    sha256_block(st, w);

    /* Compare as 256-bit little-endian integers, most significant limb first: limb k is bswap(st[k]). */
    vu below = (vu)0u, equal = (vu)0xFFFFFFFFu;
#pragma unroll
    for (int k = 7; k >= 0; k--) {
        const vu limb = BSWAP(st[k]);
        const vu t = (vu)job[24 + k];
#if LANES == 1
        below |= equal & ((limb < t) ? 0xFFFFFFFFu : 0u);
        equal &= (limb == t) ? 0xFFFFFFFFu : 0u;
#else
        below |= equal & as_vu(limb < t);
        equal &= as_vu(limb == t);
#endif
    }
    return below | equal;
}

/* Y = row j of every lane: the stored row at j / LOOKUP_GAP, then the skipped BlockMix steps. */
inline void read_rows(__global const vu *V, const vu j, vu *Y)
{
    const vu row_index = j / (vu)LOOKUP_GAP;
    load_rows(V, &row_index, Y);
#if LOOKUP_GAP > 1
    /* Lanes that need fewer recomputation steps keep their row. */
    const vu steps = j % (vu)LOOKUP_GAP;
    for (uint s = 1; s < LOOKUP_GAP; s++) {
        vu Z[ROW_WORDS];
#pragma unroll
        for (int k = 0; k < ROW_WORDS; k++)
            Z[k] = Y[k];
        block_mix(Z);
#if LANES == 1
        const vu take = (s <= steps) ? 0xFFFFFFFFu : 0u;
#else
        const vu take = as_vu((vu)s <= steps);
#endif
#pragma unroll
        for (int k = 0; k < ROW_WORDS; k++)
            Y[k] ^= (Y[k] ^ Z[k]) & take;
    }
#endif
}

/* ---------------------------------------------------------------------------------- kernel */

__kernel void scrypt_search(__constant const uint *job, const uint nonce_base, __global vu *scratch,
                            __global volatile uint *out, const uint max_out)
{
    const size_t gid = get_global_id(0);
    __global vu *V = scratch + gid * (size_t)(ROWS * ROW_WORDS);
    vu nonce, istate[8], ostate[8], X[ROW_WORDS];
    const uint first = nonce_base + (uint)gid * LANES;
#if LANES == 1
    nonce = first;
#else
#define SET_NONCE(l, c) LANE(nonce, c) = first + l;
    FOR_LANES(SET_NONCE)
#undef SET_NONCE
#endif
    pbkdf2_head(job, BSWAP(nonce), X, istate, ostate);

    /* ROMix, first loop: fill the scratchpad (every LOOKUP_GAP-th row). */
    for (uint i = 0; i < SCRYPT_N; i++) {
        if (i % LOOKUP_GAP == 0)
            store_row(V + (i / LOOKUP_GAP) * ROW_WORDS, X);
        block_mix(X);
    }

    /* ROMix, second loop: X = BlockMix(X ^ V[j]), j from X's word 16, a different row per lane. */
    for (uint i = 0; i < SCRYPT_N; i++) {
        vu Y[ROW_WORDS];
        read_rows(V, X[16] & (vu)(SCRYPT_N - 1), Y);
#pragma unroll
        for (int k = 0; k < ROW_WORDS; k++)
            X[k] ^= Y[k];
        block_mix(X);
    }

    const vu hit = pbkdf2_tail_hits(job, X, istate, ostate);
#define REPORT(l, c)                                   \
    if (LANE(hit, c)) {                                \
        const uint slot = atomic_inc(&out[0]);         \
        if (slot < max_out)                            \
            out[1 + slot] = LANE(nonce, c);            \
    }
    FOR_LANES(REPORT)
#undef REPORT
}
