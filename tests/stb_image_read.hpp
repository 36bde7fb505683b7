// stb_image for tests that read back the PNGs strata writes. Static linkage, so every test file may
// include it without duplicate symbols; skipped when another header already compiled stb_image in.
#pragma once

#ifndef STBI_INCLUDE_STB_IMAGE_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#pragma GCC diagnostic pop
#endif
