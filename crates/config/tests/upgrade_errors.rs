//! Bad upgrade (WebSocket) settings on routes, and the exact errors they produce.

#[macro_use]
mod common;

use common::check_table;

const TABLE: &[(&str, &str)] = &[
    (
        "
        routes: [{name: r, timeouts: {upgradeIdle: 0s}, filters: [{type: DirectResponse, directResponse: {status: 200}}]}]
        ",
        "t.yaml:1:44: routes[0].timeouts.upgradeIdle: must be greater than 0",
    ),
    (
        "
        routes: [{name: r, timeouts: {upgradeIdle: soon}, filters: [{type: DirectResponse, directResponse: {status: 200}}]}]
        ",
        "t.yaml:1:44: routes[0].timeouts.upgradeIdle: invalid duration \"soon\": expected a number and a unit (ms, s, m, h), e.g. 250ms or 5s",
    ),
];

#[test]
fn upgrade_settings_are_checked() {
    check_table(TABLE);
}

#[test]
fn upgrade_idle_parses_and_defaults_to_absent() {
    let config = meshgate_config::parse_str(
        "routes:\n  - {name: a, timeouts: {upgradeIdle: 300ms}, filters: [{type: DirectResponse, directResponse: {status: 200}}]}\n  - {name: b, filters: [{type: DirectResponse, directResponse: {status: 200}}]}\n",
        "t.yaml",
    )
    .unwrap();
    assert_eq!(
        config.routes[0].timeouts.upgrade_idle.map(|d| d.get()),
        Some(std::time::Duration::from_millis(300))
    );
    assert_eq!(config.routes[1].timeouts.upgrade_idle, None);
}
