# Unit tests for common/: one cmocka program per module.
tocsin_unit_test(test_tc_util tocsin_common)
tocsin_unit_test(test_tc_config tocsin_common)
tocsin_unit_test(test_tc_log tocsin_common)
tocsin_unit_test(test_tc_metrics tocsin_common)
tocsin_unit_test(test_tc_http tocsin_common PkgConfig::CURL)
tocsin_unit_test(test_tc_sketch tocsin_common)
tocsin_unit_test(test_tc_lmdb tocsin_common)
tocsin_unit_test(test_tc_signal tocsin_common)
