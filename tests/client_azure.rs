//! Against a real Azure Web PubSub resource: `WEBPUBSUB_CLIENT_URL=<client access URL with
//! the joinLeaveGroup and sendToGroup roles> cargo test --test client_azure -- --ignored`.
//! Ignored by default; asked for (`--ignored`) without the URL, it fails and says so rather
//! than passing without having run.
use std::time::Duration;
use webpubsub_client::{Event, WebPubSubClient};

#[test]
#[ignore = "needs WEBPUBSUB_CLIENT_URL (a real Azure Web PubSub client access URL)"]
fn a_group_message_comes_back_from_a_real_azure_resource() {
    let Ok(url) = std::env::var("WEBPUBSUB_CLIENT_URL") else {
        panic!(
            "WEBPUBSUB_CLIENT_URL is not set: this test runs against a real Azure Web PubSub \
             resource and needs a client access URL with the webpubsub.joinLeaveGroup and \
             webpubsub.sendToGroup roles (nothing was tested)"
        );
    };
    let client = WebPubSubClient::builder(url.as_str())
        .start_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let events = client.events();
    let _g = client.start().unwrap();
    let group = format!("rust-client-test-{}", std::process::id());
    client.join_group(&group).unwrap();
    client.send_to_group(&group, "hello from Rust").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match events.recv_deadline(deadline).expect("no echo from Azure") {
            Event::GroupMessage(m) if m.group == group => {
                assert_eq!(m.data.as_text(), Some("hello from Rust"));
                break;
            }
            _ => {}
        }
    }
    client.leave_group(&group).unwrap();
}
