/*
 * samacore._cresample: the fused CPU kernel of samacore.resample (optional; the pure-PyTorch engine is the
 * reference and the fallback).
 *
 * Why C: the PyTorch engine gathers 6-byte pixel pairs with index_select (one memcpy per pair, two per output
 * pixel) and then makes four passes over the gathered values; the gather alone is ~55 % of its time. Here every run
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
 * Taps come as samacore.resample plans them: per output row (source rows and weight) and per output column
 * (source column and weight), a few KB that stay in cache, plus per run the row and first column it reads.
 * Prefetching the next runs' source segments matters: runs jump between rows and fragments, which the hardware
 * prefetchers do not follow.
 *
 * Arguments are raw addresses of contiguous CPU tensors (checked by samacore.resample) and element strides.
 * Tap values count "units" of elements (value * unit = element offset from the frame's base).
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
/* Ask for the cache lines of [p, p + bytes) ahead of use (without it most reads wait on DRAM). */
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

/* Smallest and largest of the run's column taps x[0..run): the source segment a run reads. */
static inline void run_extent(const int64_t *x, int64_t run, int64_t *lo, int64_t *hi) {
    *lo = *hi = x[0];
    for (int64_t k = 1; k < run; k++) {
        *lo = x[k] < *lo ? x[k] : *lo;
        *hi = x[k] > *hi ? x[k] : *hi;
    }
}

/* The runs of one part of one output frame, and the taps they read (see samacore.resample.TapPlan).
 * Run r is output row row[r] of the taps tables, columns col[r] .. col[r] + run - 1; it is written at
 * out + dest[r] + c * plane + k. Tap values count units of source elements (element offset = value * unit). */
typedef struct {
    int64_t runs, run;
    const int64_t *row, *col, *dest;
    const int64_t *top, *bottom; /* per row: offsets of source rows y0 and y1 */
    const float *wy;             /* per row: weight of y1 */
    const int64_t *x;            /* per column: offset of the pixel (copies) or of the pair's left pixel */
    const float *wx;             /* per column: weight of the right pixel */
    int64_t unit, sc, sw, channels;
    float *out;
    int64_t plane;
} Runs;

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
    static void blend_##NAME(const T *src, const Runs *g, float *buffer, int32_t *local) {                        \
        const int64_t run = g->run, unit = g->unit;                                                                \
        const int64_t tail = g->sw + (g->channels - 1) * g->sc + 1; /* reach of a pair beyond its left pixel */   \
        for (int64_t r = 0; r < g->runs; r++) {                                                                    \
            if (r + SAMA_AHEAD < g->runs) {                                                                        \
                int64_t ahead = r + SAMA_AHEAD, row = g->row[ahead];                                               \
                const int64_t *x = g->x + g->col[ahead];                                                           \
                int64_t bytes = ((x[run - 1] - x[0]) * unit + tail) * (int64_t)sizeof(T);                          \
                prefetch_range(src + (g->top[row] + x[0]) * unit, bytes);                                          \
                prefetch_range(src + (g->bottom[row] + x[0]) * unit, bytes);                                       \
            }                                                                                                      \
            const int64_t row = g->row[r];                                                                         \
            const int64_t *x = g->x + g->col[r];                                                                   \
            const float *w = g->wx + g->col[r];                                                                    \
            int64_t lo, hi;                                                                                        \
            run_extent(x, run, &lo, &hi);                                                                          \
            vertical_##NAME(src + (g->top[row] + lo) * unit, src + (g->bottom[row] + lo) * unit, g->wy[row],       \
                            (hi - lo) * unit + tail, buffer);                                                      \
            for (int64_t k = 0; k < run; k++) local[k] = (int32_t)((x[k] - lo) * unit);                            \
            float *d = g->out + g->dest[r];                                                                        \
            for (int64_t c = 0; c < g->channels; c++) {                                                            \
                const float *left = buffer + c * g->sc, *right = left + g->sw;                                     \
                float *dc = d + c * g->plane;                                                                      \
                for (int64_t k = 0; k < run; k++) dc[k] = lerp_f32(left[local[k]], right[local[k]], w[k]);         \
            }                                                                                                      \
        }                                                                                                          \
    }                                                                                                              \
                                                                                                                   \
    static void copy_##NAME(const T *src, const Runs *g) {                                                         \
        const int64_t run = g->run, unit = g->unit;                                                                \
        for (int64_t r = 0; r < g->runs; r++) {                                                                    \
            if (r + SAMA_AHEAD < g->runs) {                                                                        \
                const int64_t *x = g->x + g->col[r + SAMA_AHEAD];                                                  \
                prefetch_range(src + (g->top[g->row[r + SAMA_AHEAD]] + x[0]) * unit,                               \
                               ((x[run - 1] - x[0]) * unit + (g->channels - 1) * g->sc + 1) * (int64_t)sizeof(T)); \
            }                                                                                                      \
            const T *line = src + g->top[g->row[r]] * unit;                                                        \
            const int64_t *x = g->x + g->col[r];                                                                   \
            float *d = g->out + g->dest[r];                                                                        \
            for (int64_t c = 0; c < g->channels; c++) {                                                            \
                const T *s = line + c * g->sc;                                                                     \
                float *dc = d + c * g->plane;                                                                      \
                for (int64_t k = 0; k < run; k++) dc[k] = (float)s[x[k] * unit];                                   \
            }                                                                                                      \
        }                                                                                                          \
    }

SAMA_KERNELS(uint8_t, u8)
SAMA_KERNELS(float, f32)

enum { DTYPE_U8 = 0, DTYPE_F32 = 1 };

#define PTR(type, v) ((type)(uintptr_t)(v))

/* Parses (src, dtype, unit, sc, sw, channels, runs, run, row, col, dest, top, bottom, wy, x, wx, out, plane). */
static int parse_runs(PyObject *args, unsigned long long *src, int *dtype, Runs *g) {
    unsigned long long row, col, dest, top, bottom, wy, x, wx, out;
    long long unit, sc, sw, channels, runs, run, plane;
    if (!PyArg_ParseTuple(args, "KiLLLLLLKKKKKKKKKL", src, dtype, &unit, &sc, &sw, &channels, &runs, &run, &row, &col,
                          &dest, &top, &bottom, &wy, &x, &wx, &out, &plane))
        return 0;
    if (*dtype != DTYPE_U8 && *dtype != DTYPE_F32) {
        PyErr_Format(PyExc_ValueError, "_cresample: unsupported source dtype code %d (0: uint8, 1: float32)", *dtype);
        return 0;
    }
    if (runs < 0 || run < 1 || channels < 1 || unit < 1 || sc < 0 || sw < 0) {
        PyErr_SetString(PyExc_ValueError, "_cresample: bad run or stride arguments");
        return 0;
    }
    *g = (Runs){runs, run, PTR(const int64_t *, row), PTR(const int64_t *, col), PTR(const int64_t *, dest),
                PTR(const int64_t *, top), PTR(const int64_t *, bottom), PTR(const float *, wy),
                PTR(const int64_t *, x), PTR(const float *, wx), unit, sc, sw, channels, PTR(float *, out), plane};
    return 1;
}

#define ARGS_DOC                                                                                                   \
    "(src, dtype, unit, sc, sw, channels, runs, run, row, col, dest, top, bottom, wy, x, wx, out, plane)\n\n"

PyDoc_STRVAR(blend_doc, "blend" ARGS_DOC
"Bilinear values of `runs` runs of `run` output pixels of one frame (see the Runs struct in _cresample.c).\n"
"Addresses are raw pointers of contiguous CPU arrays; dtype 0: uint8 source, 1: float32. The GIL is released.");

static PyObject *py_blend(PyObject *self, PyObject *args) {
    unsigned long long src;
    int dtype;
    Runs g;
    if (!parse_runs(args, &src, &dtype, &g)) return NULL;
    if (g.runs == 0) Py_RETURN_NONE;
    /* the longest source segment a run reads sizes the vertical buffer */
    int64_t span = 0;
    for (int64_t r = 0; r < g.runs; r++) {
        int64_t lo, hi;
        run_extent(g.x + g.col[r], g.run, &lo, &hi);
        span = hi - lo > span ? hi - lo : span;
    }
    span = span * g.unit + g.sw + (g.channels - 1) * g.sc + 1;
    float *buffer = (float *)malloc(sizeof(float) * (size_t)span);
    int32_t *local = (int32_t *)malloc(sizeof(int32_t) * (size_t)g.run);
    if (!buffer || !local) {
        free(buffer);
        free(local);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    if (dtype == DTYPE_U8)
        blend_u8(PTR(const uint8_t *, src), &g, buffer, local);
    else
        blend_f32(PTR(const float *, src), &g, buffer, local);
    Py_END_ALLOW_THREADS
    free(buffer);
    free(local);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(copy_doc, "copy" ARGS_DOC
"Exact copies of source pixels top[row[r]] + x[col[r] + k] (bottom, wy and wx are not read).");

static PyObject *py_copy(PyObject *self, PyObject *args) {
    unsigned long long src;
    int dtype;
    Runs g;
    if (!parse_runs(args, &src, &dtype, &g)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (dtype == DTYPE_U8)
        copy_u8(PTR(const uint8_t *, src), &g);
    else
        copy_f32(PTR(const float *, src), &g);
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
