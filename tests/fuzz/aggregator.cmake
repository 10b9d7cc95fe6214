# Fuzz targets of the aggregator: the decoding of a Kafka record value (an Event, as
# consumed from tocsin.events) and of a stored bucket value (as read back from LMDB).
tocsin_fuzz_target(agg_event ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_agg_event.c
                   tocsin_aggregator_core)
tocsin_fuzz_target(agg_bucket ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_agg_bucket.c
                   tocsin_aggregator_core)
