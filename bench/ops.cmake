# End-to-end latency benchmark (issue 7): bench_latency_client records errors through
# libtocsin when bench/bench_latency.py tells it to; the driver starts the real daemons (bus,
# collector, aggregator, alerter, tocsin-sink as the webhook) on 127.0.0.1 and times an error
# from the tocsin_error call to the aggregator's query answer, and a threshold crossing to the
# page. Run: bench/bench_latency.py --build-dir BUILD_DIR
add_executable(bench_latency_client ${CMAKE_CURRENT_SOURCE_DIR}/bench_latency_client.c)
tocsin_warnings(bench_latency_client)
target_link_libraries(bench_latency_client PRIVATE tocsin_static)
add_dependencies(bench bench_latency_client tocsin-collector tocsin-aggregator tocsin-alerter
                 tocsin-bus tocsin-sink)
