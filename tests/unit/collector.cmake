# Unit tests for collector/: one cmocka program per pure module.
tocsin_unit_test(test_col_validate tocsin_collector_core)
tocsin_unit_test(test_col_wire tocsin_collector_core)
tocsin_unit_test(test_col_track tocsin_collector_core)
# common/tc_grouping (the error fingerprint) is the collector engineer's; the aggregator
# calls it too.
tocsin_unit_test(test_tc_grouping tocsin_common)
tocsin_unit_test(test_col_arena tocsin_collector_core)
tocsin_unit_test(test_col_scrub tocsin_collector_core)
tocsin_unit_test(test_col_enrich tocsin_collector_core)
tocsin_unit_test(test_col_keys tocsin_collector_core)
tocsin_unit_test(test_col_spool tocsin_collector_core)
tocsin_unit_test(test_col_pack tocsin_collector_core)
