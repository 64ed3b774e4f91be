//! The emulator's modules depend one way: each uses only the layers below it (the order
//! written in the crate docs' "Architecture" paragraph), and no two modules import each
//! other, directly or around a cycle.

use std::path::Path;

/// Lowest first. The protocol logic (`admission`, `messages`, `rest`) sits below every
/// module that touches a socket (`net` and up), so it cannot reach for one.
const LAYERS: &[&[&str]] = &[
    &[
        "auth", "checks", "frames", "handler", "http", "odata", "patterns", "types", "upstream",
        "wake",
    ],
    &["roles"],
    &["session"],
    &["hub"],
    &["shared"],
    &["access", "client_url"],
    &["admission", "exchange", "handle", "messages"],
    &["faults"],
    &["rest"],
    &["net"],
    &["connection"],
    &["upgrade"],
    &["server"],
    &["emulator"],
];

#[test]
fn modules_depend_only_on_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let violations = webpubsub_testkit::modules::layer_violations(&src, LAYERS);
    assert!(
        violations.is_empty(),
        "dependencies against the layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_layer_check_sees_the_modules() {
    // A check that finds no modules would pass whatever the code does.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = webpubsub_testkit::modules::graph(&src);
    let listed: usize = LAYERS.iter().map(|l| l.len()).sum();
    assert_eq!(graph.len(), listed, "modules: {:?}", graph.keys());
    assert!(graph["server"].contains("upgrade"), "{:?}", graph["server"]);
    assert!(
        graph["messages"].contains("session"),
        "{:?}",
        graph["messages"]
    );
}
