// Catch2 (v2) main, alone in its translation unit so it compiles once. Tests live in tests/test_*.cpp.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
