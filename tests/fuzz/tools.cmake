# Fuzz targets of tools/: tocsinctl's reader of the Prometheus text format, which parses
# whatever a daemon's /metrics port answers.
tocsin_fuzz_target(ctl_prom ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_ctl_prom.c tocsin_ctl_core)
