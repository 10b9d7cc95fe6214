# Fuzz targets for collector/: decode-and-validate of a Batch as it arrives from a client.
tocsin_fuzz_target(col_batch ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_col_batch.c tocsin_collector_core)
