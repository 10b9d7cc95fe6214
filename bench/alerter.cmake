# Alerter benchmarks: bench_alerter (rule evaluations per second with 10,000 rules, in the
# core) and bench/bench_alerter_storm.py (a storm of 10,000 alerts through the real daemon
# to Slack/PagerDuty/webhook sinks, and the same storm through Prometheus Alertmanager).
# Run both with bench/bench_alerter.sh BUILD_DIR.
add_executable(bench_alerter ${CMAKE_CURRENT_SOURCE_DIR}/bench_alerter.c)
tocsin_warnings(bench_alerter)
target_link_libraries(bench_alerter PRIVATE tocsin_alerter_core)
add_dependencies(bench bench_alerter tocsin-alerter tocsin-sink tocsin-bus alr_push)
