/* sha256d (SHA-256 of SHA-256) for mining.hashing.

   Why C: the proxy builds a header for every share it checks, and each one costs 7 sha256d
   (coinbase, then up the merkle branch), all on inputs of 32 to ~200 bytes. Through hashlib each
   SHA-256 allocates and initialises an OpenSSL 3 EVP context, which costs ~4 times the hash itself:
   6.8 us per share against 1.9 us here (bench/scrypt.py prints both). This uses OpenSSL's
   one-context SHA-256 on the stack (SHA-NI where the CPU has it), nothing else.

   SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, but still exported;
   EVP measured 2-3 times slower on these sizes even with a reused context. */

#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <openssl/sha.h>

/* Like hashlib: hashing a large buffer lets other threads run. */
#define GIL_MINSIZE 2048

static void
sha256d_into(const unsigned char *data, size_t length, unsigned char out[SHA256_DIGEST_LENGTH])
{
    SHA256_CTX ctx;
    unsigned char first[SHA256_DIGEST_LENGTH];

    SHA256_Init(&ctx);
    SHA256_Update(&ctx, data, length);
    SHA256_Final(first, &ctx);
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, first, sizeof(first));
    SHA256_Final(out, &ctx);
}

static PyObject *
sha256d(PyObject *module, PyObject *data)
{
    Py_buffer view;
    unsigned char out[SHA256_DIGEST_LENGTH];

    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (view.len >= GIL_MINSIZE) {
        Py_BEGIN_ALLOW_THREADS
        sha256d_into(view.buf, (size_t)view.len, out);
        Py_END_ALLOW_THREADS
    }
    else {
        sha256d_into(view.buf, (size_t)view.len, out);
    }
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)out, sizeof(out));
}

static PyMethodDef methods[] = {
    {"sha256d", sha256d, METH_O,
     "sha256d(data, /)\n--\n\nSHA-256 of the SHA-256 of a bytes-like object, as 32 bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mining._sha256d",
    .m_doc = "sha256d over OpenSSL's SHA-256, without hashlib's per-call context.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__sha256d(void)
{
    return PyModuleDef_Init(&module);
}
