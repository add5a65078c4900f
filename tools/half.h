/* The GPU's 16-bit float formats on the host, for `closs eval --device cuda`: float32 to IEEE
 * half (f16) and to bfloat16 with round-to-nearest-even (as the CUDA intrinsics __float2half_rn and
 * __float2bfloat16_rn), and back exactly. Overflow gives infinity; NaN stays a quiet NaN. */
#ifndef CLOSS_TOOLS_HALF_H
#define CLOSS_TOOLS_HALF_H

#include <stdint.h>

uint16_t cli_f16_from_float(float value);
float cli_float_from_f16(uint16_t bits);
uint16_t cli_bf16_from_float(float value);
float cli_float_from_bf16(uint16_t bits);

#endif
