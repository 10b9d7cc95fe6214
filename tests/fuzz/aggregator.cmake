# Fuzz targets of the aggregator: the scanner of Kafka record values from tocsin.events, the
# decoders of what comes back from LMDB (stored buckets, stored log records), and the view's
# decoder of tocsin.rollups records (bucket and issue states, statuses, checkpoints).
tocsin_fuzz_target(agg_event ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_agg_event.c
                   tocsin_aggregator_core)
tocsin_fuzz_target(agg_bucket ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_agg_bucket.c
                   tocsin_aggregator_core)
tocsin_fuzz_target(agg_rollup ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_agg_rollup.c
                   tocsin_aggregator_core)
tocsin_fuzz_target(agg_log ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_agg_log.c
                   tocsin_aggregator_core)
# A whole record of tocsin.events / tocsin.logs: its format header, then a single Event or an
# EventPack walked entry by entry with every event scanned.
tocsin_fuzz_target(agg_pack ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_agg_pack.c
                   tocsin_aggregator_core)
