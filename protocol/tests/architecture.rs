//! The protocol crate's modules depend on each other in one direction only, lowest first:
//! the error, the values (payloads, metadata, `Any`), the rules, the message types, the two
//! codecs, and the subprotocols that pick a codec. A codec never knows the other; nothing
//! below a codec knows any wire format.

use std::path::Path;

const LAYERS: &[&[&str]] = &[
    &["error", "websocket"],
    &["any", "data", "metadata"],
    &["rules"],
    &["client_msg", "service_msg"],
    &["json", "protobuf"],
    &["subprotocol"],
];

#[test]
fn modules_depend_on_lower_layers_only_and_have_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let violations = webpubsub_testkit::modules::layer_violations(&src, LAYERS);
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn the_two_codecs_do_not_know_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = webpubsub_testkit::modules::graph(&src);
    assert!(!graph["json"].contains("protobuf"), "{graph:?}");
    assert!(!graph["protobuf"].contains("json"), "{graph:?}");
    // The check sees the modules: a renamed one would make it pass for nothing.
    for layer in LAYERS {
        for module in *layer {
            assert!(graph.contains_key(*module), "no module {module}: {graph:?}");
        }
    }
}
