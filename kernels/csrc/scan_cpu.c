/* Fused CPU selective scan, the recurrence only: h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t, y_t = C_t . h_t.
 * (softplus, the D skip and the z gate are elementwise over (B, D, L) and stay in PyTorch: kernels/scan_cpu.py.)
 *
 * One pass over L per (batch, channel) row, vectorised over the N states. Layouts (fp32, contiguous): dt, u, y,
 * gy, du, ddt: (B, D, L); A: (D, N); Bm, Cm: (B, G, L, N) (time major: one step's states side by side);
 * last, glast, dA: (B, D, N). The backward keeps the state every SEG steps, then walks the segments from last to
 * first, recomputing a segment's states and decays and running the adjoint through them. The channels of one
 * group are split into nblk blocks; each block writes its own dB / dC partial (B, G, nblk, L, N), and dA is per
 * batch row, so no two threads write one address; the caller sums the partials.
 * Built by seqmix.kernels.scan_cpu with the system C compiler; without one, seqmix uses the PyTorch scan.
 */
#include <stdlib.h>
#include <string.h>

#define SEG 64

/* exp for the state loops, eight lanes at a time with GCC vector extensions (libm's expf is scalar and the
 * auto-vectoriser does not take a bit-cast): Cody-Waite reduction and Cephes' degree-6 polynomial, within 2 ulp on
 * [-87.3, 88]; clamped outside (exp(-87.3) ~ 1e-38 stands in for smaller values); NaN stays NaN. */
typedef float v8sf __attribute__((vector_size(32)));
typedef int v8si __attribute__((vector_size(32)));

static inline v8sf select8(v8si mask, v8sf a, v8sf b) { return (v8sf)(((v8si)a & mask) | ((v8si)b & ~mask)); }

static inline v8sf vexp8(v8sf x) {
    const v8sf zero = {0}, hi = zero + 88.0f, lo = zero - 87.3f;
    v8sf xc = select8(x > hi, hi, x);
    xc = select8(xc < lo, lo, xc);
    const v8sf kf = xc * 1.44269504088896341f + 0.5f;
    v8si ki = __builtin_convertvector(kf, v8si); /* truncates; floor below */
    ki += (v8si)(__builtin_convertvector(ki, v8sf) > kf);
    const v8sf k = __builtin_convertvector(ki, v8sf);
    v8sf r = xc - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;
    v8sf p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const v8sf y = (p * r * r + r + 1.0f) * (v8sf)((ki + 127) << 23);
    return select8(x != x, x, y);
}

static inline v8sf load8(const float *p) {
    v8sf v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline void store8(float *p, v8sf v) { memcpy(p, &v, sizeof(v)); }

static inline float sum8(v8sf v) { return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])); }

static inline float vexp(float x) { return vexp8((v8sf){x, x, x, x, x, x, x, x})[0]; }

/* h <- a h + x B in place, a = exp(dt A); returns C . h (0 when C is NULL). */
static inline float step(float *restrict h, const float *restrict A, const float *restrict B, const float *restrict C,
                         float dt, float x, int N) {
    v8sf acc = {0};
    float y = 0.0f;
    int n = 0;
    for (; n + 8 <= N; n += 8) {
        const v8sf hn = vexp8(load8(A + n) * dt) * load8(h + n) + load8(B + n) * x;
        store8(h + n, hn);
        if (C) acc += hn * load8(C + n);
    }
    for (; n < N; n++) {
        h[n] = vexp(dt * A[n]) * h[n] + x * B[n];
        if (C) y += h[n] * C[n];
    }
    return sum8(acc) + y;
}

/* The same from h_in into h_out, keeping the decays a. */
static inline void step_keep(float *restrict h_out, float *restrict a, const float *restrict h_in,
                             const float *restrict A, const float *restrict B, float dt, float x, int N) {
    int n = 0;
    for (; n + 8 <= N; n += 8) {
        const v8sf an = vexp8(load8(A + n) * dt);
        store8(a + n, an);
        store8(h_out + n, an * load8(h_in + n) + load8(B + n) * x);
    }
    for (; n < N; n++) {
        a[n] = vexp(dt * A[n]);
        h_out[n] = a[n] * h_in[n] + x * B[n];
    }
}

/* One step of the adjoint: g = gy C + e; accumulates dA, dB, dC; e <- a g; returns (sum g a h_prev A, sum g B). */
static inline void adjoint(float *restrict e, float *restrict dA, float *restrict dB, float *restrict dC,
                           const float *restrict a, const float *restrict h_prev, const float *restrict h,
                           const float *restrict A, const float *restrict B, const float *restrict C, float gy,
                           float dt, float u, int N, float *qA_out, float *gB_out) {
    float qA = 0.0f, gB = 0.0f;
#pragma omp simd reduction(+ : qA, gB)
    for (int n = 0; n < N; n++) {
        const float g = gy * C[n] + e[n];
        const float q = g * a[n] * h_prev[n]; /* dL/d(dt * A) */
        dA[n] += q * dt;
        qA += q * A[n];
        gB += g * B[n];
        dB[n] += g * dt * u;
        dC[n] += gy * h[n];
        e[n] = a[n] * g;
    }
    *qA_out = qA;
    *gB_out = gB;
}

int seqmix_scan_abi(void) { return 2; }

void seqmix_scan_fwd(const float *dt, const float *u, const float *A, const float *Bm, const float *Cm, float *y,
                     float *last, int batch, int dim, int groups, int L, int N, int nthreads) {
    const int H = dim / groups;
#pragma omp parallel num_threads(nthreads)
    {
        float *h = calloc((size_t)N, sizeof(float));
#pragma omp for schedule(static)
        for (long row = 0; row < (long)batch * dim; row++) {
            const int b = (int)(row / dim), d = (int)(row % dim), g = d / H;
            const float *Bb = Bm + ((long)b * groups + g) * L * N, *Cb = Cm + ((long)b * groups + g) * L * N;
            memset(h, 0, sizeof(float) * N);
            for (int t = 0; t < L; t++) {
                const float dtt = dt[row * L + t];
                y[row * L + t] = step(h, A + (long)d * N, Bb + (long)t * N, Cb + (long)t * N, dtt, dtt * u[row * L + t], N);
            }
            memcpy(last + row * N, h, sizeof(float) * N);
        }
        free(h);
    }
}

void seqmix_scan_bwd(const float *dt, const float *u, const float *A, const float *Bm, const float *Cm,
                     const float *gy, const float *glast, float *du, float *ddt, float *dA, float *dB, float *dC,
                     int batch, int dim, int groups, int L, int N, int nblk, int nthreads) {
    const int H = dim / groups, per = (H + nblk - 1) / nblk, nseg = (L + SEG - 1) / SEG;
#pragma omp parallel num_threads(nthreads)
    {
        float *ck = malloc(sizeof(float) * (size_t)nseg * N);      /* the state at each segment start */
        float *hs = malloc(sizeof(float) * (size_t)(SEG + 1) * N); /* one segment's states, hs[0] its start */
        float *as = malloc(sizeof(float) * (size_t)SEG * N);       /* and its decays */
        float *h = malloc(sizeof(float) * (size_t)N), *e = malloc(sizeof(float) * (size_t)N);
#pragma omp for schedule(dynamic, 1)
        for (long item = 0; item < (long)batch * groups * nblk; item++) {
            const int b = (int)(item / ((long)groups * nblk)), g = (int)(item / nblk % groups), blk = (int)(item % nblk);
            const float *Bb = Bm + ((long)b * groups + g) * L * N, *Cb = Cm + ((long)b * groups + g) * L * N;
            float *dBb = dB + (((long)b * groups + g) * nblk + blk) * L * N;
            float *dCb = dC + (((long)b * groups + g) * nblk + blk) * L * N;
            memset(dBb, 0, sizeof(float) * (size_t)L * N);
            memset(dCb, 0, sizeof(float) * (size_t)L * N);
            const int d_end = g * H + (blk + 1) * per < (g + 1) * H ? g * H + (blk + 1) * per : (g + 1) * H;
            for (int d = g * H + blk * per; d < d_end; d++) {
                const long row = (long)b * dim + d;
                const float *Ad = A + (long)d * N, *dtr = dt + row * L, *ur = u + row * L, *gyr = gy + row * L;
                float *dAr = dA + row * N;
                memset(h, 0, sizeof(float) * N);
                memset(dAr, 0, sizeof(float) * N);
                for (int t = 0; t < L; t++) {
                    if (t % SEG == 0) memcpy(ck + (long)(t / SEG) * N, h, sizeof(float) * N);
                    step(h, Ad, Bb + (long)t * N, NULL, dtr[t], dtr[t] * ur[t], N);
                }
                if (glast) memcpy(e, glast + row * N, sizeof(float) * N);
                else memset(e, 0, sizeof(float) * N);
                for (int s = nseg - 1; s >= 0; s--) {
                    const int t0 = s * SEG, t1 = t0 + SEG < L ? t0 + SEG : L;
                    memcpy(hs, ck + (long)s * N, sizeof(float) * N);
                    for (int t = t0; t < t1; t++) {
                        const long i = t - t0;
                        step_keep(hs + (i + 1) * N, as + i * N, hs + i * N, Ad, Bb + (long)t * N, dtr[t], dtr[t] * ur[t], N);
                    }
                    for (int t = t1 - 1; t >= t0; t--) {
                        const long i = t - t0;
                        float qA, gB;
                        adjoint(e, dAr, dBb + (long)t * N, dCb + (long)t * N, as + i * N, hs + i * N,
                                hs + (i + 1) * N, Ad, Bb + (long)t * N, Cb + (long)t * N, gyr[t], dtr[t], ur[t], N,
                                &qA, &gB);
                        du[row * L + t] = dtr[t] * gB;
                        ddt[row * L + t] = qA + ur[t] * gB;
                    }
                }
            }
        }
        free(ck);
        free(hs);
        free(as);
        free(h);
        free(e);
    }
}
