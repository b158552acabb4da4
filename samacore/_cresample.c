/*
 * samacore._cresample: the fused CPU kernel of samacore.resample (optional; the pure-PyTorch engine is the
 * reference and the fallback).
 *
 * Why C: the PyTorch engine gathers 6-byte pixel pairs with index_select (one memcpy per pair, two per output
 * pixel) and then makes four passes over the gathered values; that is ~55 % of the sampling time. Here every run
 * of output pixels (the part of one output row inside one fragment tile) is computed in one pass:
 *
 *   1. vertical blend of the contiguous source segment the run reads, rows y0 and y1 (SIMD-friendly), into a
 *      small float buffer;
 *   2. horizontal blend of each output pixel's pair (x0, x0 + 1) from that buffer, written straight into the
 *      output's channel planes.
 *
 * The arithmetic is PyTorch's: float32, lerp(a, b, w) = a + w (b - a) for |w| < 0.5, else b - (b - a)(1 - w);
 * vertical first, then horizontal. Compiled with -ffp-contract=off so that no multiply-add is fused and results
 * do not depend on the CPU.
 *
 * Arguments come from samacore.resample: raw addresses of contiguous CPU tensors (checked there) and element
 * strides. Index arrays count "units" of elements (idx * unit = element offset from the frame's base).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
/* one AVX2 build of the vectorisable loops beside the baseline one, chosen at load time */
#define SAMA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SAMA_CLONES
#endif

static inline float lerp_f32(float a, float b, float w) {
    float d = b - a;
    float lo = a + w * d;
    float hi = b - d * (1.0f - w);
    return fabsf(w) < 0.5f ? lo : hi;
}

#ifndef SAMA_AHEAD
#define SAMA_AHEAD 8
#endif
/* Ask for the cache lines of [p, p + bytes) ahead of use: runs jump between rows and fragments, a pattern the
 * hardware prefetchers do not follow, so without this most reads wait on DRAM. */
static inline void prefetch_range(const void *p, int64_t bytes) {
#if defined(__GNUC__)
    const char *c = (const char *)p;
    for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 0);
    __builtin_prefetch(c + bytes - 1, 0, 0);
#else
    (void)p;
    (void)bytes;
#endif
}

/* One implementation per source element type. */
#define SAMA_KERNELS(T, NAME)                                                                                      \
    SAMA_CLONES static void vertical_##NAME(const T *top, const T *bottom, float w, int64_t n, float *v) {        \
        if (w == 0.0f) {                                                                                           \
            for (int64_t j = 0; j < n; j++) v[j] = (float)top[j];                                                  \
        } else if (fabsf(w) < 0.5f) {                                                                              \
            for (int64_t j = 0; j < n; j++) {                                                                      \
                float a = (float)top[j];                                                                           \
                v[j] = a + w * ((float)bottom[j] - a);                                                             \
            }                                                                                                      \
        } else {                                                                                                   \
            float iw = 1.0f - w;                                                                                   \
            for (int64_t j = 0; j < n; j++) {                                                                      \
                float b = (float)bottom[j];                                                                        \
                v[j] = b - (b - (float)top[j]) * iw;                                                               \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
                                                                                                                   \
    static void blend_##NAME(const T *src, int64_t unit, int64_t sc, int64_t sw, int64_t channels,                 \
                             const int64_t *top, const int64_t *bottom, const float *wy, const float *wx,          \
                             int64_t runs, int64_t run, const int64_t *dest, float *out, int64_t plane,            \
                             float *buffer, int32_t *local) {                                                      \
        int64_t tail = sw + (channels - 1) * sc + 1; /* elements a pair reaches beyond its left pixel */           \
        for (int64_t r = 0; r < runs; r++) {                                                                       \
            if (r + SAMA_AHEAD < runs) {                                                                           \
                const int64_t *n = top + (r + SAMA_AHEAD) * run;                                                   \
                int64_t bytes = ((n[run - 1] - n[0]) * unit + tail) * (int64_t)sizeof(T);                          \
                prefetch_range(src + n[0] * unit, bytes);                                                          \
                prefetch_range(src + bottom[(r + SAMA_AHEAD) * run] * unit, bytes);                                \
            }                                                                                                      \
            const int64_t *t = top + r * run;                                                                      \
            const float *w = wx + r * run;                                                                         \
            int64_t lo = t[0], hi = t[0];                                                                          \
            for (int64_t k = 1; k < run; k++) {                                                                    \
                lo = t[k] < lo ? t[k] : lo;                                                                        \
                hi = t[k] > hi ? t[k] : hi;                                                                        \
            }                                                                                                      \
            int64_t first = lo * unit, rows = (bottom[r * run] - t[0]) * unit; /* same rows for the whole run */  \
            vertical_##NAME(src + first, src + first + rows, wy[r], (hi - lo) * unit + tail, buffer);              \
            for (int64_t k = 0; k < run; k++) local[k] = (int32_t)(t[k] * unit - first);                           \
            float *d = out + dest[r];                                                                              \
            for (int64_t c = 0; c < channels; c++) {                                                               \
                const float *left = buffer + c * sc, *right = left + sw;                                           \
                float *dc = d + c * plane;                                                                         \
                for (int64_t k = 0; k < run; k++) dc[k] = lerp_f32(left[local[k]], right[local[k]], w[k]);         \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
                                                                                                                   \
    static void copy_##NAME(const T *src, int64_t unit, int64_t sc, int64_t sw, int64_t channels,                  \
                            const int64_t *pixel, int segments, int64_t runs, int64_t run, const int64_t *dest,    \
                            float *out, int64_t plane) {                                                           \
        for (int64_t r = 0; r < runs; r++) {                                                                       \
            if (segments && r + SAMA_AHEAD < runs)                                                                 \
                prefetch_range(src + pixel[r + SAMA_AHEAD] * unit,                                                 \
                               ((run - 1) * sw + (channels - 1) * sc + 1) * (int64_t)sizeof(T));                   \
            float *d = out + dest[r];                                                                              \
            for (int64_t c = 0; c < channels; c++) {                                                               \
                float *dc = d + c * plane;                                                                         \
                if (segments) {                                                                                    \
                    const T *s = src + pixel[r] * unit + c * sc;                                                   \
                    for (int64_t k = 0; k < run; k++) dc[k] = (float)s[k * sw];                                    \
                } else {                                                                                           \
                    const int64_t *p = pixel + r * run;                                                            \
                    for (int64_t k = 0; k < run; k++) dc[k] = (float)src[p[k] * unit + c * sc];                    \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }

SAMA_KERNELS(uint8_t, u8)
SAMA_KERNELS(float, f32)

enum { DTYPE_U8 = 0, DTYPE_F32 = 1 };

static int check_dtype(int dtype) {
    if (dtype != DTYPE_U8 && dtype != DTYPE_F32) {
        PyErr_Format(PyExc_ValueError, "_cresample: unsupported source dtype code %d (0: uint8, 1: float32)", dtype);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(blend_doc,
"blend(src, dtype, unit, sc, sw, channels, top, bottom, wy, wx, runs, run, dest, out, plane)\n\n"
"Bilinear values of runs x run output pixels: pairs at top[m] / bottom[m] (int64 units), vertical weight wy[r]\n"
"per run, horizontal wx[m] per pixel, written to out + dest[r] + c * plane + k (float32). Addresses are raw\n"
"pointers; the GIL is released while computing.");

static PyObject *py_blend(PyObject *self, PyObject *args) {
    unsigned long long src, top, bottom, wy, wx, dest, out;
    long long unit, sc, sw, channels, runs, run, plane;
    int dtype;
    if (!PyArg_ParseTuple(args, "KiLLLLKKKKLLKKL", &src, &dtype, &unit, &sc, &sw, &channels, &top, &bottom, &wy,
                          &wx, &runs, &run, &dest, &out, &plane))
        return NULL;
    if (!check_dtype(dtype)) return NULL;
    if (runs <= 0 || run <= 0) Py_RETURN_NONE;
    /* the longest source segment a run reads sizes the vertical buffer */
    const int64_t *t = (const int64_t *)(uintptr_t)top;
    int64_t span = 0;
    for (int64_t r = 0; r < runs; r++) {
        int64_t lo = t[r * run], hi = lo;
        for (int64_t k = 1; k < run; k++) {
            lo = t[r * run + k] < lo ? t[r * run + k] : lo;
            hi = t[r * run + k] > hi ? t[r * run + k] : hi;
        }
        span = hi - lo > span ? hi - lo : span;
    }
    span = span * unit + sw + (channels - 1) * sc + 1;
    float *buffer = (float *)malloc(sizeof(float) * (size_t)span);
    int32_t *local = (int32_t *)malloc(sizeof(int32_t) * (size_t)run);
    if (!buffer || !local) {
        free(buffer);
        free(local);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    if (dtype == DTYPE_U8)
        blend_u8((const uint8_t *)(uintptr_t)src, unit, sc, sw, channels, (const int64_t *)(uintptr_t)top,
                 (const int64_t *)(uintptr_t)bottom, (const float *)(uintptr_t)wy, (const float *)(uintptr_t)wx,
                 runs, run, (const int64_t *)(uintptr_t)dest, (float *)(uintptr_t)out, plane, buffer, local);
    else
        blend_f32((const float *)(uintptr_t)src, unit, sc, sw, channels, (const int64_t *)(uintptr_t)top,
                  (const int64_t *)(uintptr_t)bottom, (const float *)(uintptr_t)wy, (const float *)(uintptr_t)wx,
                  runs, run, (const int64_t *)(uintptr_t)dest, (float *)(uintptr_t)out, plane, buffer, local);
    Py_END_ALLOW_THREADS
    free(buffer);
    free(local);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(copy_doc,
"copy(src, dtype, unit, sc, sw, channels, pixel, segments, runs, run, dest, out, plane)\n\n"
"Exact copies: pixel[r] is the first pixel of run r (segments) or pixel[m] each pixel's own (int64 units).");

static PyObject *py_copy(PyObject *self, PyObject *args) {
    unsigned long long src, pixel, dest, out;
    long long unit, sc, sw, channels, runs, run, plane;
    int dtype, segments;
    if (!PyArg_ParseTuple(args, "KiLLLLKpLLKKL", &src, &dtype, &unit, &sc, &sw, &channels, &pixel, &segments, &runs,
                          &run, &dest, &out, &plane))
        return NULL;
    if (!check_dtype(dtype)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (dtype == DTYPE_U8)
        copy_u8((const uint8_t *)(uintptr_t)src, unit, sc, sw, channels, (const int64_t *)(uintptr_t)pixel, segments,
                runs, run, (const int64_t *)(uintptr_t)dest, (float *)(uintptr_t)out, plane);
    else
        copy_f32((const float *)(uintptr_t)src, unit, sc, sw, channels, (const int64_t *)(uintptr_t)pixel, segments,
                 runs, run, (const int64_t *)(uintptr_t)dest, (float *)(uintptr_t)out, plane);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"blend", py_blend, METH_VARARGS, blend_doc},
    {"copy", py_copy, METH_VARARGS, copy_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cresample",
                                    "Fused CPU kernel of samacore.resample (see _cresample.c).", -1, methods};

#ifndef SAMA_SOURCE_SHA256
#define SAMA_SOURCE_SHA256 "unknown"
#endif

PyMODINIT_FUNC PyInit__cresample(void) {
    PyObject *m = PyModule_Create(&module);
    /* the digest of the source this was built from: samacore.resample refuses a build of an older source */
    if (m && PyModule_AddStringConstant(m, "SOURCE_SHA256", SAMA_SOURCE_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
