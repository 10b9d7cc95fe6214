# libtocsin's benchmark: cost per recorded event on the calling thread and events per second
# delivered to a real collector, next to one UDP sendto and one ZeroMQ send per event.
# Run it with bench/bench_client.sh BUILD_DIR (starts tocsin-bus and tocsin-collector).
add_executable(bench_client ${CMAKE_CURRENT_SOURCE_DIR}/bench_client.c)
tocsin_warnings(bench_client)
target_link_libraries(bench_client PRIVATE tocsin tocsin_proto PkgConfig::ZMQ Threads::Threads)
add_dependencies(bench bench_client)
