/* sha256d (SHA-256 of SHA-256) for mining.hashing.

   Why C: the proxy builds a header for every share it checks: one sha256d for the coinbase and
   one per merkle branch step (7 in bench.proxy's jobs, more for a full block), all on inputs of
   32 to a few hundred bytes. Through hashlib each
   SHA-256 allocates and initialises an OpenSSL 3 EVP context, which costs ~4 times the hash itself:
   a share's header takes 7.5 us that way against 2.2 us with this (`python -m bench.share_path`
   prints both). This runs OpenSSL's SHA-256 on a context on the stack (SHA-NI where the CPU has
   it), nothing else.

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
