# Unit tests for alerter/: one cmocka program per module, on a virtual clock where time
# matters. test_alr_core runs the issue's scenarios (rollups in at time t, notifications
# out at exactly these times). test_alr_notify runs real HTTP and SMTP servers on
# 127.0.0.1 port 0 and test_alr_store real LMDB files in a temporary directory.
foreach(t test_alr_yaml test_alr_match test_alr_rules test_alr_rollup test_alr_window
          test_alr_eval test_alr_silence test_alr_dispatch test_alr_render test_alr_core
          test_alr_notify test_alr_store)
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${t}.c)
        tocsin_unit_test(${t} tocsin_alerter_core)
        target_compile_definitions(${t} PRIVATE TOCSIN_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
    endif()
endforeach()
