# Unit tests for collector/: one cmocka program per pure module.
tocsin_unit_test(test_col_validate tocsin_collector_core)
tocsin_unit_test(test_col_wire tocsin_collector_core)
tocsin_unit_test(test_col_track tocsin_collector_core)
