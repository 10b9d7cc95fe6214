# End-to-end tests of the collector (scenarios_collector.py): its tools and its scenarios.
add_executable(e2e_col_client ${CMAKE_CURRENT_SOURCE_DIR}/e2e_col_client.c)
tocsin_warnings(e2e_col_client)
target_link_libraries(e2e_col_client PRIVATE tocsin_common PkgConfig::ZMQ)

add_executable(e2e_col_consume ${CMAKE_CURRENT_SOURCE_DIR}/e2e_col_consume.c)
tocsin_warnings(e2e_col_consume)
target_link_libraries(e2e_col_consume PRIVATE tocsin_common)

add_executable(e2e_col_emit ${CMAKE_CURRENT_SOURCE_DIR}/e2e_col_emit.c)
tocsin_warnings(e2e_col_emit)
target_link_libraries(e2e_col_emit PRIVATE tocsin_static)

tocsin_e2e_test(collector_bad_input TIMEOUT 120)
tocsin_e2e_test(collector_kafka_outage TIMEOUT 240)
tocsin_e2e_test(collector_spool_restart TIMEOUT 180)
tocsin_e2e_test(collector_failover_kill9 TIMEOUT 240)
tocsin_e2e_test(collector_curve TIMEOUT 120)
tocsin_e2e_test(collector_keys_quota_scrub TIMEOUT 120)

# Writes a spool entry as collectors wrote them before packing (one Event per record).
add_executable(e2e_col_spool_seed ${CMAKE_CURRENT_SOURCE_DIR}/e2e_col_spool_seed.c)
tocsin_warnings(e2e_col_spool_seed)
target_link_libraries(e2e_col_spool_seed PRIVATE tocsin_collector_core tocsin_common)
