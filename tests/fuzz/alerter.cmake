# Fuzz targets of the alerter: the decoding of a tocsin.rollups record (key and value, as
# consumed from Kafka), then the window store fed with what decoded.
tocsin_fuzz_target(alr_rollup ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_alr_rollup.c
                   tocsin_alerter_core)
