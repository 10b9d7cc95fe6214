# Collector benchmark: bench_collector (load generator, syslog feed, watermark timer) driven by
# bench_collector.py, which starts the broker, the collector and rsyslog and prints the figures.
add_executable(bench_collector ${CMAKE_CURRENT_SOURCE_DIR}/bench_collector.c)
tocsin_warnings(bench_collector)
target_link_libraries(bench_collector PRIVATE tocsin_common PkgConfig::ZMQ)
add_dependencies(bench bench_collector tocsin-collector tocsin-bus)
