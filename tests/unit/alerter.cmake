# Unit tests for alerter/: one cmocka program per module, on a virtual clock where time
# matters. test_alr_notify runs a real HTTP server (tc_http) on 127.0.0.1 port 0 and
# test_alr_store real LMDB files in a temporary directory.
tocsin_unit_test(test_alr_rules tocsin_alerter_core)
target_compile_definitions(test_alr_rules PRIVATE TOCSIN_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
tocsin_unit_test(test_alr_rollup tocsin_alerter_core)
tocsin_unit_test(test_alr_window tocsin_alerter_core)
tocsin_unit_test(test_alr_eval tocsin_alerter_core)
tocsin_unit_test(test_alr_notify tocsin_alerter_core)
tocsin_unit_test(test_alr_store tocsin_alerter_core)
