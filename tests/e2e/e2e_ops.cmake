# End-to-end tests of operations (issue 7): tocsinctl against the real daemons, and every
# file in deploy/ checked by its validator (scenarios_ops.py).
tocsin_e2e_test(ops_ctl TIMEOUT 120)
tocsin_e2e_test(ops_deploy TIMEOUT 180)

# The chaos test (scenarios_chaos.py): bus, two collectors, two aggregators and the alerter
# while clients send a known set of events through e2e_chaos_emit and, in turn, a collector
# is killed, the brokers go away longer than the producer time-out, and an aggregator is
# killed; the counts and the alerts must come out exact.
add_executable(e2e_chaos_emit ${CMAKE_CURRENT_SOURCE_DIR}/e2e_chaos_emit.c)
tocsin_warnings(e2e_chaos_emit)
target_link_libraries(e2e_chaos_emit PRIVATE tocsin_static)
tocsin_e2e_test(chaos_pipeline TIMEOUT 150)
