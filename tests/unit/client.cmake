# Unit tests of libtocsin (clients/c). The pure modules are tested through tocsin_internal
# (the static library plus its internal headers); test_tocsin_client runs the library
# against a real ZeroMQ ROUTER acting as a collector, and runs tocsin-example too.
tocsin_unit_test(test_tocsin_record tocsin_internal)
tocsin_unit_test(test_tocsin_queue tocsin_internal)
tocsin_unit_test(test_tocsin_batch tocsin_internal)
tocsin_unit_test(test_tocsin_inflight tocsin_internal)
tocsin_unit_test(test_tocsin_options tocsin_static ${MATH_LIB})
tocsin_unit_test(test_tocsin_client tocsin_static)
add_dependencies(test_tocsin_client tocsin-example)
set_tests_properties(unit.test_tocsin_client PROPERTIES
    ENVIRONMENT "TOCSIN_EXAMPLE=$<TARGET_FILE:tocsin-example>")
tocsin_unit_test(test_tocsin_event tocsin_internal)
tocsin_unit_test(test_tocsin_crash tocsin_internal)
tocsin_unit_test(test_tocsin_stack tocsin_internal)
tocsin_unit_test(test_tocsin_scope tocsin_internal)
