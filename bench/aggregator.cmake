# Aggregator benchmarks: bench_aggregator (query latency over 31 days of data and the quantile
# error table next to Prometheus' histogram_quantile, in process) and
# bench/bench_aggregator.py (events per second consumed and committed by one real daemon from
# the embedded broker, LMDB bytes per million events, HTTP query latency; it runs
# bench_aggregator too). Run: python3 bench/bench_aggregator.py BUILD_DIR
add_executable(bench_aggregator ${CMAKE_CURRENT_SOURCE_DIR}/bench_aggregator.c)
tocsin_warnings(bench_aggregator)
target_link_libraries(bench_aggregator PRIVATE tocsin_aggregator_core)
add_dependencies(bench bench_aggregator tocsin-aggregator tocsin-bus agg_produce)
