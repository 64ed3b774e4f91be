//! Dependencies inside the client point one way (lowest layer first); no module cycle.

use std::path::Path;

/// The client's layers, lowest first: a module may use its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &[
        "endpoint",
        "proxy",
        "retry",
        "timers",
        "wire",
        "ack_table",
        "invocations",
        "waiter",
        "events",
    ],
    &["state", "runtime"],
    &["options"],
    &["transport"],
    &["core"],
    &["acks", "invoke", "io"],
    &["client"],
];

#[test]
fn modules_depend_only_on_lower_layers_and_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let violations = webpubsub_testkit::modules::layer_violations(&src, LAYERS);
    assert!(
        violations.is_empty(),
        "{} layer violation(s):\n{}",
        violations.len(),
        violations.join("\n")
    );
}
