# Unit tests of the aggregator's modules (aggregator/): the pure ones, and the LMDB store,
# which runs against real LMDB files in a temporary directory; and common/tc_hll, which the
# aggregator brought.
tocsin_unit_test(test_tc_hll tocsin_common)
tocsin_unit_test(test_agg_wire tocsin_aggregator_core)
tocsin_unit_test(test_agg_bucket tocsin_aggregator_core)
tocsin_unit_test(test_agg_dedupe tocsin_aggregator_core)
tocsin_unit_test(test_agg_issue tocsin_aggregator_core)
tocsin_unit_test(test_agg_query tocsin_aggregator_core)
tocsin_unit_test(test_agg_log tocsin_aggregator_core)
tocsin_unit_test(test_agg_store tocsin_aggregator_core)
