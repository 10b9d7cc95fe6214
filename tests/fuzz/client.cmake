# Fuzz targets for libtocsin (clients/c): the crash report parser (files in crash_dir) and
# the Ack decoder (replies from collectors).
tocsin_fuzz_target(tocsin_crash ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_tocsin_crash.c tocsin_internal)
