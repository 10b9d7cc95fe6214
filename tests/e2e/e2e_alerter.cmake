# End-to-end tests of the alerter: the real daemon, the embedded broker, real HTTP sinks
# playing Slack, PagerDuty and a webhook, and an SMTP sink (all tocsin-sink). alr_push
# writes tocsin.rollups records directly, so each scenario controls what the alerter reads.
add_executable(alr_push ${CMAKE_CURRENT_SOURCE_DIR}/alr_push.c)
tocsin_warnings(alr_push)
target_link_libraries(alr_push PRIVATE tocsin_common)

tocsin_e2e_test(alerter_receivers TIMEOUT 120)
tocsin_e2e_test(alerter_escalation_restart TIMEOUT 120)
tocsin_e2e_test(alerter_api TIMEOUT 120)
tocsin_e2e_test(alerter_ha_failover TIMEOUT 120)
