/* Litecoin's proof of work, scrypt(header, header, N=1024, r=1, p=1, 32 bytes), for many headers at
   once (mining/_scrypt.c). Used by mining/_hashes.c, the module's Python face. */

#ifndef QSCRYPT_SCRYPT_H
#define QSCRYPT_SCRYPT_H

#include <stddef.h>

#define SCRYPT_HEADER_BYTES 80
#define SCRYPT_HASH_BYTES 32

/* The implementations this CPU can run, best first, NULL-terminated ("avx512", "avx2", "scalar"). */
const char *const *scrypt_impls(void);

/* Index into scrypt_impls() of `name`, or -1 when this CPU cannot run it (or it does not exist). */
int scrypt_impl_index(const char *name);

/* Hashes `count` 80-byte headers into `count` 32-byte hashes with implementation `impl` (an index
   from scrypt_impl_index; 0 is the best). Touches no Python state, so callers release the GIL.
   Returns 0, or -1 when its scratchpad could not be allocated. */
int scrypt_many(int impl, const unsigned char *headers, unsigned char *out, size_t count);

#endif
