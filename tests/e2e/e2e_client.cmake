# End-to-end scenarios of libtocsin (scenarios_client.py) and the program that drives the
# library in them.
add_executable(tocsin-e2e-client ${CMAKE_SOURCE_DIR}/clients/c/testing/e2e_client.c)
tocsin_warnings(tocsin-e2e-client)
target_link_libraries(tocsin-e2e-client PRIVATE tocsin PkgConfig::ZMQ)

tocsin_e2e_test(client_queue_full TIMEOUT 120)
tocsin_e2e_test(client_no_collector TIMEOUT 120)
tocsin_e2e_test(client_collector_restart TIMEOUT 180)
tocsin_e2e_test(client_failover TIMEOUT 180)
tocsin_e2e_test(client_crash_emit_example TIMEOUT 180)
tocsin_e2e_test(client_curve TIMEOUT 120)
