/* crc32c.h -- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of the wire protocol's payload frames.
 *
 * The value is the finished CRC (initial and final inversion are applied
 * inside), as in zlib's crc32(), so a checksum over several pieces is
 *     crc = crc32c_update(0, a, na); crc = crc32c_update(crc, b, nb);
 * and equals crc32c_update(0, ab, na + nb). crc32c_update(0, "123456789", 9)
 * is 0xE3069283. */
#ifndef ARCFACE_CRC32C_H
#define ARCFACE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 for a fresh checksum) with n bytes at data (any alignment;
 * data may be NULL when n is 0). Uses the SSE4.2 crc32 instruction when the
 * CPU has it, otherwise crc32c_update_table. Thread-safe, can't fail. */
uint32_t crc32c_update(uint32_t crc, const void *data, size_t n);

/* The portable slicing-by-8 table implementation: the reference the hardware
 * path is tested against. Same contract as crc32c_update. */
uint32_t crc32c_update_table(uint32_t crc, const void *data, size_t n);

/* 1 when crc32c_update uses the SSE4.2 instruction, 0 otherwise. */
int crc32c_hw_available(void);

#endif
