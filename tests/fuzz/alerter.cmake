# Fuzz targets of the alerter: the decoding of a tocsin.rollups record (key and value, as
# consumed from Kafka) and what decodes through the window store; rule files (YAML) and
# silence bodies (JSON), the two things people hand it.
tocsin_fuzz_target(alr_rollup ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_alr_rollup.c
                   tocsin_alerter_core)
tocsin_fuzz_target(alr_rules ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_alr_rules.c
                   tocsin_alerter_core)
