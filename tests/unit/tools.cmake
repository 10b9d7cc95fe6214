# Unit tests for tools/ctl (tocsinctl): one cmocka program per module. test_ctl_http runs a
# real HTTP server (tc_http) on 127.0.0.1 port 0; test_ctl_rules reads rule files through
# the alerter's own parser.
tocsin_unit_test(test_ctl_prom tocsin_ctl_core)
tocsin_unit_test(test_ctl_table tocsin_ctl_core)
tocsin_unit_test(test_ctl_args tocsin_ctl_core)
tocsin_unit_test(test_ctl_http tocsin_ctl_core)
tocsin_unit_test(test_ctl_status tocsin_ctl_core)
tocsin_unit_test(test_ctl_view tocsin_ctl_core)
tocsin_unit_test(test_ctl_rules tocsin_ctl_core)
tocsin_unit_test(test_ctl_lag tocsin_ctl_core)
# common/tc_selfmon (the daemons' heartbeat through the pipeline, issue 7): a real ZeroMQ
# ROUTER plays the collector; librdkafka's mock cluster serves the lag helper.
tocsin_unit_test(test_tc_selfmon tocsin_selfmon PkgConfig::ZMQ)
