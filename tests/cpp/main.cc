// Catch2 entry point for needle_tests. Tests carry their assignment as a tag ([hw0], [hw1], ...).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
