# Unit tests of the aggregator's modules (aggregator/): the pure ones and the LMDB store,
# which runs against real LMDB files in a temporary directory.
tocsin_unit_test(test_agg_bucket tocsin_aggregator_core)
tocsin_unit_test(test_agg_query tocsin_aggregator_core)
tocsin_unit_test(test_agg_store tocsin_aggregator_core)
