# End-to-end tests of operations (issue 7): tocsinctl against the real daemons, and every
# file in deploy/ checked by its validator (scenarios_ops.py).
tocsin_e2e_test(ops_ctl TIMEOUT 120)
tocsin_e2e_test(ops_deploy TIMEOUT 180)
