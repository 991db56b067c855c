/* align.h -- face alignment: the similarity transform from 5 facial landmarks
 * to the ArcFace 112x112 template, and the affine warp that cuts the aligned
 * crop out of the image, as insightface's face_align.norm_crop does
 * (skimage's SimilarityTransform.estimate, then cv2.warpAffine).
 *
 * Coordinates are OpenCV's: pixel (x, y) has its centre at the integer point
 * (x, y), x to the right, y down. A 2x3 matrix M maps a point p to
 * (M[0] px + M[1] py + M[2], M[3] px + M[4] py + M[5]). */
#ifndef ARCFACE_ALIGN_H
#define ARCFACE_ALIGN_H

#include <stddef.h>
#include <stdint.h>

#define ALIGN_SIZE 112
#define ALIGN_POINTS 5

/* Landmarks closer together than this (RMS distance from their centroid, in
 * image pixels) are rejected by align_estimate: a face that small carries no
 * usable detail, and such input is almost always a detector's failure. */
#define ALIGN_MIN_SPREAD 1.0

/* The ArcFace template, insightface's arcface_dst: where the left eye, right
 * eye, nose tip, left and right mouth corners land in the 112x112 crop
 * ("left" = smaller x, i.e. the person's right eye in an upright photo). */
extern const double align_template[ALIGN_POINTS][2];

/* The least-squares similarity transform (rotation, uniform scale,
 * translation; never a reflection) taking src[i] to dst[i], i < n: M
 * minimises sum_i |M src[i] - dst[i]|^2 over M = [a -b tx; b a ty]. This is
 * Umeyama's method with scaling (skimage's SimilarityTransform.estimate; in
 * 2-D its SVD reduces to the closed form used here, the same result when the
 * points determine the transform). src and dst are n points (x, y), n >= 2.
 * If rms is not NULL it receives sqrt(mean_i |M src[i] - dst[i]|^2).
 * Returns 0, or -1 with a reason in err when the problem has no unique
 * rotation and scale: a non-finite coordinate, all src points (nearly)
 * equal, or dst points that no rotation matches at all (best scale 0, e.g.
 * all dst equal); M is unspecified then. Can't fail otherwise, no allocation. */
int align_similarity(double M[6], const double (*src)[2], const double (*dst)[2], int n, double *rms, char *err,
                     size_t errlen);

/* The transform taking 5 image landmarks (left eye, right eye, nose tip, left
 * mouth corner, right mouth corner, image pixels) to align_template:
 * align_similarity plus the ALIGN_MIN_SPREAD check. rms, if not NULL,
 * receives the fit's residual in 112x112 crop pixels (a few pixels for real
 * detector landmarks; much more suggests landmarks in the wrong order).
 * Returns 0, or -1 with a reason in err. */
int align_estimate(double M[6], const double landmarks[ALIGN_POINTS][2], double *rms, char *err, size_t errlen);

/* Inverts the affine map M into inv (OpenCV's invertAffineTransform; what
 * cv2.warpAffine does with M). Returns 0, or -1 when M is singular (inv is
 * then all zero, which OpenCV would use as is). */
int align_invert(double inv[6], const double M[6]);

/* dst is (dst_h, dst_w, channels) uint8 HWC; src is (src_h, src_w, channels),
 * rows packed; channels is 1 or 3; M maps src to dst coordinates. Writes
 * dst(x, y) = src(M^-1 (x, y)), bilinear, source pixels outside the image
 * counting as 0 -- cv2.warpAffine(src, M, (dst_w, dst_h), flags=INTER_LINEAR,
 * borderMode=BORDER_CONSTANT, borderValue=0), pixel for pixel: OpenCV's
 * fixed point (source positions rounded to 1/32 pixel through its 10-bit
 * incremental coordinates, integer weights, round half up) is reproduced,
 * not approximated. For a singular M, every pixel is src(0, 0), as in
 * OpenCV. Can't fail, no allocation; dst and src must not overlap. */
void align_warp(uint8_t *dst, int dst_w, int dst_h, const uint8_t *src, int src_w, int src_h, int channels,
                const double M[6]);

#endif
