/* synthetic.c -- procedurally drawn faces for demos, tests and benchmarks.
 *
 * How an image is made. Every identity is a vector of ~45 continuous
 * parameters, each one uniform draw rng_hash4(seed, RNG_SYNTHETIC, identity, k)
 * mapped to a range: head ellipse axes and jaw taper; skin tone (a curve from
 * light to dark plus warmth); hair colour (blond-brown-black, red tint, some
 * grey), volume, length, hairline height/curvature/parting and a stripe
 * texture; ear size; eye spacing, height, size and iris colour; eyebrow
 * offset, length, thickness and slant; nose length and width; mouth width,
 * height, lip thickness, resting smile and lip colour; beard density, cheek
 * blush, an optional mole, optional glasses.
 *
 * Every image (instance) draws, from rng_hash4(seed, RNG_SYNTHETIC, identity,
 * (instance + 1) << 8 | k), a similarity transform (translation +-3 px,
 * scale +-8%, in-plane rotation +-10 degrees), brightness and contrast
 * (+-15%), a linear lighting gradient, a small colour cast, an expression
 * (smile, open mouth), eye openness and gaze, a two-colour background, and
 * gaussian-like pixel noise (sigma 2..6 levels, a sum of four uniforms).
 *
 * The background belongs to the image, not to the identity: with a
 * per-identity background, raw-pixel cosine verified held-out pairs at 91%,
 * because the background is the largest uniform area of the picture. With it
 * per image the raw-pixel baseline is 69% (test_synthetic prints it), while a
 * linear PCA+LDA model trained on other identities reaches ~94%: identity is
 * in the shapes and colours of the face, not in the raw pixels.
 *
 * Rendering is one pass over the output pixels: each pixel centre is mapped
 * back into the canonical face frame (origin at the image centre, y down,
 * units of pixels at scale 1), the layers are composited back to front
 * (background, hair, neck, ears, face, beard, fringe, nose, mouth, eyes,
 * brows, glasses), each as a signed distance whose coverage ramps linearly
 * over one output pixel (anti-aliasing without supersampling). Small
 * features are skipped outside their bounding band, which keeps an image near
 * 0.6 ms on one core. Pure float arithmetic, no tables, no allocation. */
#include "synthetic.h"

/* No fused multiply-adds: with contraction off the float arithmetic is plain
 * IEEE, so every build (gcc or clang, -O0 or -O2 -march=native) on the same
 * libm renders the same bytes for the same (seed, identity, instance), and
 * workers built differently still see the same data. */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rng.h"

#define CENTER (FACE_SIZE * 0.5f)

typedef struct {
    /* geometry in the canonical frame */
    float face_cy, face_rx, face_ry, jaw;
    float hair_vol, hair_rise, hair_len, hairline, hairline_curve, hairline_tilt, hair_part;
    float hair_side, hair_freq, hair_phase;
    float ear_w, ear_h;
    float eye_dx, eye_y, eye_rx, eye_ry, iris_r;
    float brow_dy, brow_len, brow_th, brow_slant, brow_arch;
    float brow_dx, brow_dy_end; /* half-extent of the brow stroke */
    float nose_len, nose_w;
    float mouth_w, mouth_y, lip_up, lip_lo, smile;
    float beard, blush;
    float mole_x, mole_y, mole_r; /* mole_r = 0: no mole */
    float glasses;                /* frame thickness, 0 = none */
    float skin[3], hair[3], brow[3], iris[3], lip[3], frame[3];
} Face;

typedef struct {
    float tx, ty, scale, cos_r, sin_r;
    float gain, contrast, light_x, light_y, cast[3];
    float smile, open, eye_open, gaze_x, gaze_y;
    float bg[3], bg2[3]; /* this image's background, top and bottom */
    float noise;
    uint64_t noise_key;
} Pose;

/* Draws of one identity (slot 0) or one instance (slot instance + 1). */
typedef struct {
    uint64_t seed, identity, slot;
    uint64_t k;
} Draw;

static float draw_u(Draw *d) {
    return rng_uniform(rng_hash4(d->seed, RNG_SYNTHETIC, d->identity, (d->slot << 8) | d->k++));
}
static float draw_range(Draw *d, float lo, float hi) { return lo + (hi - lo) * draw_u(d); }

static float lerpf(float a, float b, float t) { return a + (b - a) * t; }
static void lerp3(float *out, const float *a, const float *b, float t) {
    for (int c = 0; c < 3; c++) out[c] = lerpf(a[c], b[c], t);
}
/* Piecewise-linear walk through n colour anchors, t in [0, 1]. */
static void ramp3(float *out, const float (*anchors)[3], int n, float t) {
    float x = t * (float)(n - 1);
    int i = (int)x;
    if (i >= n - 1) i = n - 2;
    lerp3(out, anchors[i], anchors[i + 1], x - (float)i);
}
static void hsv3(float *out, float h, float s, float v) {
    float r = fabsf(h * 6 - 3) - 1, g = 2 - fabsf(h * 6 - 2), b = 2 - fabsf(h * 6 - 4);
    float rgb[3] = {r, g, b};
    for (int c = 0; c < 3; c++) {
        float x = rgb[c] < 0 ? 0 : rgb[c] > 1 ? 1 : rgb[c];
        out[c] = 255.0f * v * (1 - s + s * x);
    }
}

static void face_params(Face *f, uint64_t seed, uint64_t identity) {
    Draw d = {seed, identity, 0, 0};
    f->face_rx = draw_range(&d, 31, 40);
    f->face_ry = draw_range(&d, 42, 52);
    f->face_cy = draw_range(&d, 0, 6);
    f->jaw = draw_range(&d, 0.0f, 0.35f);
    f->hair_vol = draw_range(&d, 2, 12);
    f->hair_rise = draw_range(&d, 0, 6);
    f->hair_len = draw_range(&d, -8, 60);
    f->hairline = draw_range(&d, 0.42f, 0.8f);
    f->hairline_curve = draw_range(&d, -0.35f, 0.7f);
    f->hair_part = draw_range(&d, -14, 14);
    f->hairline_tilt = draw_range(&d, -0.15f, 0.15f);
    f->hair_side = draw_range(&d, 0, 0.18f);
    if (f->hair_len < 20) f->hair_side = 0; /* only long hair frames the cheeks */
    f->hair_freq = draw_range(&d, 0.35f, 1.1f);
    f->hair_phase = draw_range(&d, 0, 6.2832f);
    f->ear_w = draw_range(&d, 4, 7.5f);
    f->ear_h = draw_range(&d, 8, 13);
    f->eye_dx = draw_range(&d, 13, 20);
    f->eye_y = f->face_cy - f->face_ry * draw_range(&d, 0.1f, 0.3f);
    f->eye_rx = draw_range(&d, 4.5f, 7.5f);
    f->eye_ry = f->eye_rx * draw_range(&d, 0.4f, 0.65f);
    f->iris_r = f->eye_ry * draw_range(&d, 0.8f, 1.05f);
    f->brow_dy = draw_range(&d, 5.5f, 10);
    f->brow_len = f->eye_rx * draw_range(&d, 1.0f, 1.5f);
    f->brow_th = draw_range(&d, 1.4f, 4.2f);
    f->brow_slant = draw_range(&d, -0.3f, 0.3f); /* radians, + = outer end higher */
    f->brow_arch = draw_range(&d, 0, 0.12f);
    f->brow_dx = f->brow_len * cosf(f->brow_slant);
    f->brow_dy_end = f->brow_len * sinf(f->brow_slant);
    f->nose_len = draw_range(&d, 14, 24);
    f->nose_w = draw_range(&d, 8, 16);
    f->mouth_w = draw_range(&d, 14, 28);
    f->mouth_y = f->eye_y + f->nose_len + draw_range(&d, 8, 15);
    f->lip_up = draw_range(&d, 1.2f, 3.2f);
    f->lip_lo = draw_range(&d, 1.6f, 4.2f);
    f->smile = draw_range(&d, -0.3f, 0.6f);

    float u = draw_u(&d);
    f->beard = u < 0.3f ? 0.35f + 0.55f * (u / 0.3f) : 0;
    f->blush = draw_range(&d, 0, 0.3f);
    u = draw_u(&d);
    /* one draw per statement: argument and operand order is unspecified in C */
    float mx = draw_range(&d, 8, 22);
    if (draw_u(&d) < 0.5f) mx = -mx;
    float my = draw_range(&d, f->eye_y + 8, f->mouth_y);
    f->mole_r = u < 0.35f ? 0.9f + 0.9f * (u / 0.35f) : 0;
    f->mole_x = mx;
    f->mole_y = my;
    u = draw_u(&d);
    f->glasses = u < 0.18f ? 1.2f + 1.4f * (u / 0.18f) : 0;

    static const float skin_anchors[3][3] = {{240, 208, 184}, {206, 152, 110}, {108, 70, 48}};
    ramp3(f->skin, skin_anchors, 3, draw_u(&d));
    float warm = draw_range(&d, -1, 1);
    f->skin[0] += 8 * warm;
    f->skin[2] -= 6 * warm;

    static const float hair_anchors[3][3] = {{224, 190, 122}, {112, 72, 44}, {28, 24, 22}};
    ramp3(f->hair, hair_anchors, 3, sqrtf(draw_u(&d)));
    float red = draw_u(&d);
    red *= red;
    f->hair[0] += 80 * red * (1 - f->hair[0] / 400);
    f->hair[2] -= 12 * red;
    u = draw_u(&d);
    if (u < 0.12f) {
        static const float grey[3] = {186, 184, 180};
        lerp3(f->hair, f->hair, grey, 0.4f + 5 * u);
    }
    for (int c = 0; c < 3; c++) f->brow[c] = f->hair[c] * 0.75f;

    static const float iris_anchors[4][3] = {{70, 115, 170}, {85, 125, 75}, {118, 72, 36}, {42, 27, 18}};
    ramp3(f->iris, iris_anchors, 4, draw_u(&d));
    static const float red_lip[3] = {186, 74, 84};
    lerp3(f->lip, f->skin, red_lip, draw_range(&d, 0.25f, 0.6f));
    for (int c = 0; c < 3; c++) f->lip[c] *= 0.92f;

    static const float dark_frame[3] = {28, 26, 30};
    float frame_col[3];
    hsv3(frame_col, draw_u(&d), 0.6f, 0.6f);
    lerp3(f->frame, dark_frame, frame_col, draw_u(&d) < 0.5f ? 0 : 0.7f);
}

static void pose_params(Pose *p, uint64_t seed, uint64_t identity, uint64_t instance) {
    Draw d = {seed, identity, instance + 1, 0};
    p->tx = draw_range(&d, -3, 3);
    p->ty = draw_range(&d, -3, 3);
    p->scale = draw_range(&d, 0.92f, 1.08f);
    float rot = draw_range(&d, -10, 10) * (3.14159265f / 180);
    p->cos_r = cosf(rot);
    p->sin_r = sinf(rot);
    p->gain = draw_range(&d, 0.85f, 1.15f);
    p->contrast = draw_range(&d, 0.85f, 1.15f);
    p->light_x = draw_range(&d, -0.12f, 0.12f);
    p->light_y = draw_range(&d, -0.08f, 0.08f);
    for (int c = 0; c < 3; c++) p->cast[c] = draw_range(&d, 0.96f, 1.04f);
    p->smile = draw_range(&d, -0.4f, 0.4f);
    float u = draw_u(&d);
    p->open = u < 0.3f ? 3.0f * (u / 0.3f) : 0;
    p->eye_open = draw_range(&d, 0.7f, 1.1f);
    p->gaze_x = draw_range(&d, -1.2f, 1.2f);
    p->gaze_y = draw_range(&d, -0.5f, 0.5f);
    p->noise = draw_range(&d, 2, 6);
    float hue = draw_u(&d), sat = draw_range(&d, 0.1f, 0.6f), val = draw_range(&d, 0.3f, 0.92f);
    hsv3(p->bg, hue, sat, val);
    float bg_fade = draw_range(&d, 0.6f, 1.15f);
    for (int c = 0; c < 3; c++) p->bg2[c] = p->bg[c] * bg_fade;
    p->noise_key = rng_hash4(seed, RNG_SYNTHETIC, identity, ((instance + 1) << 8) | 255);
}

/* Plain compares: fmaxf/fminf are library calls unless NaNs are ruled out. */
static inline float maxf(float a, float b) { return a > b ? a : b; }
static inline float minf(float a, float b) { return a < b ? a : b; }

/* Signed distance to an axis-aligned ellipse (negative inside), the usual
 * first-order approximation: exact on the boundary, good enough for a
 * one-pixel coverage ramp. */
static inline float sd_ellipse(float x, float y, float rx, float ry) {
    float irx = 1 / rx, iry = 1 / ry;
    float ax = x * irx, ay = y * iry;
    float k0 = sqrtf(ax * ax + ay * ay);
    float bx = ax * irx, by = ay * iry;
    float k1 = sqrtf(bx * bx + by * by);
    return k1 > 1e-6f ? k0 * (k0 - 1) / k1 : -minf(rx, ry);
}

/* Distance from (x, y) to the segment (ax, ay)-(bx, by). */
static inline float dist_segment(float x, float y, float ax, float ay, float bx, float by) {
    float px = x - ax, py = y - ay, dx = bx - ax, dy = by - ay;
    float t = (px * dx + py * dy) / (dx * dx + dy * dy);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    px -= t * dx;
    py -= t * dy;
    return sqrtf(px * px + py * py);
}

static inline float clamp01(float x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

/* A sine-like wave of period 2 pi made of two parabolas (within 6% of sin). */
static inline float wave(float x) {
    float t = x * 0.15915494f;
    t -= floorf(t);
    return t < 0.5f ? 16 * t * (0.5f - t) : -16 * (t - 0.5f) * (1 - t);
}

static inline void paint(float *col, const float *c, float a) {
    if (a <= 0) return;
    col[0] += (c[0] - col[0]) * a;
    col[1] += (c[1] - col[1]) * a;
    col[2] += (c[2] - col[2]) * a;
}
static inline void paint_scaled(float *col, const float *c, float k, float a) {
    if (a <= 0) return;
    col[0] += (c[0] * k - col[0]) * a;
    col[1] += (c[1] * k - col[1]) * a;
    col[2] += (c[2] * k - col[2]) * a;
}

/* Colour of the canonical point (u, v); px is output pixels per canonical
 * unit (the coverage ramp is one output pixel wide). */
static void shade(float *col, const Face *f, const Pose *p, float u, float v, float px) {
#define COV(d) clamp01(0.5f - (d) * px)
    const float au = fabsf(u), side = u < 0 ? -1.0f : 1.0f;

    /* hair mass behind the head, cut at its length */
    float d_hair = sd_ellipse(u, v - (f->face_cy - f->hair_rise), f->face_rx + f->hair_vol,
                              f->face_ry + 0.5f * f->hair_vol + f->hair_rise);
    float hair_shade = 1 + 0.06f * wave(f->hair_freq * (u - f->hair_part + 0.02f * v) + f->hair_phase);
    paint_scaled(col, f->hair, hair_shade * 0.85f, COV(maxf(d_hair, v - (f->face_cy + f->hair_len))));

    /* neck and ears */
    float neck_top = f->face_cy + 0.4f * f->face_ry;
    paint_scaled(col, f->skin, 0.78f, COV(maxf(au - 0.52f * f->face_rx, neck_top - v)));
    float ear_y = f->eye_y + 6;
    if (fabsf(v - ear_y) < f->ear_h + 2) {
        float ex = au - f->face_rx * 0.96f;
        paint_scaled(col, f->skin, 0.9f, COV(sd_ellipse(ex, v - ear_y, f->ear_w, f->ear_h)));
        paint_scaled(col, f->skin, 0.74f,
                     COV(sd_ellipse(ex - 0.6f, v - ear_y, 0.45f * f->ear_w, 0.6f * f->ear_h)));
    }

    /* face: an ellipse whose lower half narrows toward the chin, darker at the rim */
    float fy = v - f->face_cy;
    float t = clamp01(fy / f->face_ry);
    float rx = f->face_rx * (1 - f->jaw * t * t);
    float d_face = sd_ellipse(u, fy, rx, f->face_ry);
    float cov_face = COV(d_face);
    if (cov_face > 0) {
        float r2 = (u * u) / (rx * rx) + (fy * fy) / (f->face_ry * f->face_ry);
        paint_scaled(col, f->skin, 1 - 0.2f * r2 * r2, cov_face);
        if (f->blush > 0) {
            static const float rose[3] = {220, 90, 100};
            float bx = au - f->eye_dx, by = v - (f->eye_y + 15);
            float b = 1 - (bx * bx + by * by) * (1.0f / 100);
            if (b > 0) paint(col, rose, f->blush * b * b * cov_face);
        }
        if (f->beard > 0) {
            /* chin below the mouth, moustache above it, a band along the jaw */
            float chin = clamp01((v - f->mouth_y + 1) * 0.3f);
            float tip = f->eye_y + f->nose_len;
            float stache = clamp01((v - tip - 1.5f) * 0.5f) * clamp01((0.5f * f->mouth_w + 3 - au) * 0.4f);
            float jaw = clamp01((d_face + 7) * 0.3f) * clamp01((v - f->eye_y - 8) * 0.3f);
            float a = f->beard * maxf(chin, maxf(stache, jaw)) * cov_face;
            paint_scaled(col, f->hair, 0.8f, a);
        }
    }

    /* fringe: hair over the forehead down to the hairline */
    float hx = (u - f->hair_part) / f->face_rx;
    float hairline = f->face_cy + f->face_ry * (f->hairline_curve * 0.5f * hx * hx + f->hairline_tilt * hx - f->hairline);
    paint_scaled(col, f->hair, hair_shade, COV(maxf(d_hair, v - hairline)));
    if (f->hair_side > 0) /* long hair framing the cheeks */
        paint_scaled(col, f->hair, hair_shade * 0.93f,
                     COV(maxf(maxf(d_hair, (1 - f->hair_side) * rx - au), v - (f->face_cy + 0.6f * f->hair_len))));

    if (f->mole_r > 0 && fabsf(u - f->mole_x) < f->mole_r + 2 && fabsf(v - f->mole_y) < f->mole_r + 2) {
        float mx = u - f->mole_x, my = v - f->mole_y;
        static const float mole[3] = {80, 52, 40};
        paint(col, mole, 0.8f * COV(sqrtf(mx * mx + my * my) - f->mole_r) * cov_face);
    }

    /* nose: a soft side shadow, the shadow under the tip, two nostrils */
    float tip = f->eye_y + f->nose_len;
    if (v > f->eye_y && v < tip + 6) {
        float ds = dist_segment(u, v, 0.3f * f->nose_w, f->eye_y + 5, 0.42f * f->nose_w, tip - 2);
        paint_scaled(col, f->skin, 0.72f, 0.35f * clamp01(1 - ds * 0.45f));
        float dt = sd_ellipse(u, v - tip - 0.5f, 0.55f * f->nose_w, 3.2f);
        paint_scaled(col, f->skin, 0.8f, 0.6f * clamp01(0.5f - dt * 0.5f));
        float dn = sd_ellipse(au - 0.27f * f->nose_w, v - tip - 0.8f, 0.15f * f->nose_w, 1.4f);
        paint_scaled(col, f->skin, 0.42f, COV(dn));
    }

    /* mouth: two lips between parabolas whose corners rise with the smile */
    float hw = 0.5f * f->mouth_w;
    if (au < hw + 2 && fabsf(v - f->mouth_y) < 12) {
        float s = clamp01(au / hw), taper = sqrtf(maxf(0, 1 - s * s));
        float yc = f->mouth_y - 4 * (f->smile + p->smile) * s * s;
        float open = p->open * taper;
        float d_lips = maxf(au - hw, maxf(yc - f->lip_up * taper - v, v - (yc + open + f->lip_lo * taper)));
        paint(col, f->lip, COV(d_lips));
        float d_line = maxf(au - hw, fabsf(v - yc - 0.5f * open) - 0.5f * (0.7f + open));
        static const float inner[3] = {62, 22, 26};
        paint(col, inner, 0.85f * COV(d_line));
    }

    /* eyes, brows, glasses */
    if (fabsf(v - f->eye_y) < f->brow_dy + f->brow_th + f->eye_rx + 8) {
        float qx = au - f->eye_dx, qy = v - f->eye_y;
        float ry = f->eye_ry * p->eye_open;
        static const float white[3] = {236, 232, 226}, pupil[3] = {14, 12, 12};
        int in_eye = fabsf(qx) < f->eye_rx + 2 && fabsf(qy) < ry + 2;
        if (in_eye) paint_scaled(col, f->skin, 0.35f, COV(sd_ellipse(qx, qy, f->eye_rx + 0.8f, ry + 0.8f)));
        float cov_white = in_eye ? COV(sd_ellipse(qx, qy, f->eye_rx, ry)) : 0;
        if (cov_white > 0) {
            paint(col, white, cov_white);
            float ix = qx - side * p->gaze_x, iy = qy - p->gaze_y;
            float di = sqrtf(ix * ix + iy * iy);
            paint(col, f->iris, minf(cov_white, COV(di - f->iris_r)));
            paint(col, pupil, minf(cov_white, COV(di - 0.45f * f->iris_r)));
            float gx = ix + side * 0.35f * f->iris_r, gy = iy + 0.35f * f->iris_r;
            paint(col, white, 0.9f * minf(cov_white, COV(sqrtf(gx * gx + gy * gy) - 0.22f * f->iris_r)));
        }
        /* brow: a slanted, slightly arched stroke; + slant lifts the outer end */
        float bcx = f->eye_dx, bcy = f->eye_y - f->brow_dy;
        float dx = f->brow_dx, dy = f->brow_dy_end;
        if (fabsf(au - bcx) < f->brow_len + f->brow_th + 2 && fabsf(v - bcy) < f->brow_len + f->brow_th + 2) {
            float bq = (au - bcx) / f->brow_len;
            float arch = f->brow_arch * f->brow_len * (1 - bq * bq);
            float db = dist_segment(au, v + arch, bcx - dx, bcy + dy, bcx + dx, bcy - dy);
            paint(col, f->brow, COV(db - 0.5f * f->brow_th));
        }
        if (f->glasses > 0 && au < f->eye_dx + f->eye_rx + 10) {
            float R = f->eye_rx + 6;
            float gy = v - f->eye_y - 1;
            float dr = fabsf(sqrtf(qx * qx + gy * gy) - R) - 0.5f * f->glasses;
            float bridge = f->eye_dx - R;
            float dbr = bridge > 0 ? dist_segment(u, v, -bridge, f->eye_y - 1, bridge, f->eye_y - 1) : 1e9f;
            float dg = minf(dr, dbr - 0.5f * f->glasses);
            paint(col, f->frame, COV(dg));
        }
    }
#undef COV
}

void synthetic_render(uint8_t *rgb, uint64_t seed, int64_t identity, int64_t instance) {
    Face f;
    Pose p;
    face_params(&f, seed, (uint64_t)identity);
    pose_params(&p, seed, (uint64_t)identity, (uint64_t)instance);
    const float inv_scale = 1.0f / p.scale;
    const float offset = 128 * (1 - p.contrast); /* contrast pivots around mid-grey */
    uint64_t counter = p.noise_key;
    for (int y = 0; y < FACE_SIZE; y++) {
        float iy = (float)y + 0.5f - CENTER;
        float back[3];
        lerp3(back, p.bg, p.bg2, (float)y * (1.0f / (FACE_SIZE - 1)));
        for (int x = 0; x < FACE_SIZE; x++) {
            float ix = (float)x + 0.5f - CENTER;
            /* output pixel -> canonical frame: undo translation, rotation, scale */
            float sx = ix - p.tx, sy = iy - p.ty;
            float u = (p.cos_r * sx + p.sin_r * sy) * inv_scale;
            float v = (-p.sin_r * sx + p.cos_r * sy) * inv_scale;
            float col[3] = {back[0], back[1], back[2]};
            shade(col, &f, &p, u, v, p.scale);
            float light = p.gain * (1 + p.light_x * ix * (1 / CENTER) + p.light_y * iy * (1 / CENTER));
            uint8_t *out = rgb + ((size_t)y * FACE_SIZE + (size_t)x) * 3;
            for (int c = 0; c < 3; c++) {
                /* sum of four 16-bit uniforms: mean 2, variance 1/3 */
                uint64_t h = rng_mix(counter++);
                float z = (float)((h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48)) *
                              (1.0f / 65536) - 2.0f;
                float val = (col[c] * p.contrast + offset) * light * p.cast[c] + z * 1.7320508f * p.noise;
                val = val < 0 ? 0 : val > 255 ? 255 : val;
                out[c] = (uint8_t)(val + 0.5f > 255 ? 255 : val + 0.5f);
            }
        }
    }
}

int synthetic_pairs(SyntheticPair *pairs, int n, uint64_t seed, int64_t first_id, int64_t n_ids,
                    int images_per_id, char *err, size_t errlen) {
    if (n <= 0 || n % 20 != 0) {
        snprintf(err, errlen, "%d pairs: need a positive multiple of 20 (10 folds, half same)", n);
        return -1;
    }
    if (n_ids < 2) {
        snprintf(err, errlen, "%lld identities: need at least 2 for different-identity pairs",
                 (long long)n_ids);
        return -1;
    }
    if (images_per_id < 2) {
        snprintf(err, errlen, "%d images per identity: need at least 2 for same-identity pairs",
                 images_per_id);
        return -1;
    }
    if (first_id < 0) {
        snprintf(err, errlen, "first identity %lld is negative", (long long)first_id);
        return -1;
    }
    const int fold = n / 10;
    for (int i = 0; i < n; i++) {
        Rng r = {rng_hash4(seed, RNG_PAIRS, (uint64_t)i, 0), 0};
        SyntheticPair *q = &pairs[i];
        memset(q, 0, sizeof *q); /* padding too, so the array can be hashed or written */
        q->same = (i % fold) < fold / 2;
        q->id_a = first_id + (int64_t)rng_next_below(&r, (uint64_t)n_ids);
        q->inst_a = (int64_t)rng_next_below(&r, (uint64_t)images_per_id);
        if (q->same) {
            q->id_b = q->id_a;
            q->inst_b = (int64_t)rng_next_below(&r, (uint64_t)images_per_id - 1);
            if (q->inst_b >= q->inst_a) q->inst_b++;
        } else {
            q->id_b = first_id + (int64_t)rng_next_below(&r, (uint64_t)n_ids - 1);
            if (q->id_b >= q->id_a) q->id_b++;
            q->inst_b = (int64_t)rng_next_below(&r, (uint64_t)images_per_id);
        }
    }
    return 0;
}
