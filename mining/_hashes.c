/* The project's compiled hashes for mining.hashing: sha256d (here) and scrypt (mining/_scrypt.c).

   sha256d (SHA-256 of SHA-256):

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

#include "_scrypt.h"

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

static PyObject *
scrypt_many_py(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"", "impl", NULL};
    Py_buffer view;
    const char *name = NULL;
    int impl = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|$z:scrypt_many", keywords, &view, &name)) {
        return NULL;
    }
    if (view.len % SCRYPT_HEADER_BYTES != 0) {
        PyErr_Format(PyExc_ValueError, "headers must be a whole number of %d-byte headers, got %zd bytes",
                     SCRYPT_HEADER_BYTES, view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    if (name != NULL && (impl = scrypt_impl_index(name)) < 0) {
        PyErr_Format(PyExc_ValueError, "scrypt implementation '%s' is not one this CPU runs (see scrypt_impls())",
                     name);
        PyBuffer_Release(&view);
        return NULL;
    }
    size_t count = (size_t)view.len / SCRYPT_HEADER_BYTES;
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(count * SCRYPT_HASH_BYTES));
    if (result == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int failed;
    /* ~50-300 us a header: other threads run meanwhile. The buffer cannot be resized while
       exported; the result is not shared with anyone yet. */
    Py_BEGIN_ALLOW_THREADS
    failed = scrypt_many(impl, view.buf, (unsigned char *)PyBytes_AS_STRING(result), count);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (failed) {
        Py_DECREF(result);
        return PyErr_NoMemory();
    }
    return result;
}

static PyObject *
scrypt_impls_py(PyObject *module, PyObject *unused)
{
    const char *const *names = scrypt_impls();
    Py_ssize_t count = 0;

    while (names[count] != NULL) {
        count++;
    }
    PyObject *result = PyTuple_New(count);
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name = PyUnicode_FromString(names[i]);
        if (name == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyTuple_SET_ITEM(result, i, name);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"sha256d", sha256d, METH_O,
     "sha256d(data, /)\n--\n\nSHA-256 of the SHA-256 of a bytes-like object, as 32 bytes."},
    {"scrypt_many", (PyCFunction)(void (*)(void))scrypt_many_py, METH_VARARGS | METH_KEYWORDS,
     "scrypt_many(headers, /, *, impl=None)\n--\n\n"
     "scrypt(N=1024, r=1, p=1, 32 bytes) of each 80-byte header salted with itself (Litecoin's proof\n"
     "of work): n*80 bytes in, n*32 out, in order. impl names an implementation from scrypt_impls()\n"
     "(default: the first, the fastest this CPU runs). The GIL is released while hashing."},
    {"scrypt_impls", scrypt_impls_py, METH_NOARGS,
     "scrypt_impls()\n--\n\nThe scrypt implementations this CPU runs, fastest first (the last is 'scalar')."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mining._hashes",
    .m_doc = "sha256d over OpenSSL's SHA-256 without hashlib's per-call context; scrypt in SIMD lanes.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__hashes(void)
{
    scrypt_impls(); /* probe the CPU once, under the GIL */
    return PyModuleDef_Init(&module);
}
