# Fuzz targets of the alerter: the decoding of a tocsin.rollups record (key and value, as
# consumed from Kafka) and what decodes through the window store; rule files (YAML) and
# silence bodies (JSON), the two things people hand it.
tocsin_fuzz_target(alr_rollup ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_alr_rollup.c
                   tocsin_alerter_core)
tocsin_fuzz_target(alr_rules ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_alr_rules.c
                   tocsin_alerter_core)
# Records of another alerter: the HA leader's state on ha.topic (mirrored by a follower) and
# the state a previous run left in LMDB (restored at start).
tocsin_fuzz_target(alr_mirror ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_alr_mirror.c
                   tocsin_alerter_core)
