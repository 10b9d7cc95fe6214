# End-to-end scenarios of the aggregator (scenarios_aggregator.py) and the tool they use to
# write encoded events straight into the bus.
add_executable(agg_produce ${CMAKE_CURRENT_SOURCE_DIR}/agg_produce.c)
tocsin_warnings(agg_produce)
target_link_libraries(agg_produce PRIVATE tocsin_common ${MATH_LIB})

tocsin_e2e_test(agg_exactly_once TIMEOUT 150)
tocsin_e2e_test(agg_takeover TIMEOUT 180)
tocsin_e2e_test(agg_formats TIMEOUT 90)
