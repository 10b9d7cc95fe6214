# End-to-end tests of the collector (scenarios_collector.py): its tools and its scenarios.
add_executable(e2e_col_client ${CMAKE_CURRENT_SOURCE_DIR}/e2e_col_client.c)
tocsin_warnings(e2e_col_client)
target_link_libraries(e2e_col_client PRIVATE tocsin_common PkgConfig::ZMQ)

add_executable(e2e_col_consume ${CMAKE_CURRENT_SOURCE_DIR}/e2e_col_consume.c)
tocsin_warnings(e2e_col_consume)
target_link_libraries(e2e_col_consume PRIVATE tocsin_common)
