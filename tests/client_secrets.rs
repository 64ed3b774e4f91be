//! B37: no token in any log line, error or Debug output, through a start, a recovery, a
//! reconnect and a failed start. Alone in its binary: it installs the global logger.
mod support;
use support::*;
use webpubsub_client::{Credential, Event};
use webpubsub_emulator::Emulator;
use webpubsub_testkit::log_capture;

per_protocol! {
    reliable;

    fn tokens_never_appear_in_logs_errors_or_debug(p: Protocol) {
        let log = log_capture::install();

        let emu = Emulator::start().unwrap();
        let u = url(&emu, "a");
        let token = u.split("access_token=").nth(1).unwrap().to_owned();
        let url2 = u.clone();
        let client = builder(Credential::from_fn(move || Ok(url2.clone())))
            .protocol(p)
            .build()
            .unwrap();
        let events = client.events();
        let _g = client.start().unwrap();
        let hub = emu.hub(HUB);
        hub.drop_connection(client.connection_id().unwrap());
        recv_until(&events, |e| matches!(e, Event::Recovered { .. }));
        hub.close_connection(client.connection_id().unwrap(), "bye");
        recv_until(&events, |e| matches!(e, Event::Disconnected { .. }));
        recv_until(&events, is_connected);
        let shown = format!("{client:?}");
        drop(_g);

        let bad = builder(u.replace("access_token=", "access_token=x").as_str())
            .protocol(p)
            .build()
            .unwrap();
        let err = bad.start().unwrap_err();

        let lines: Vec<String> = log
            .lines()
            .iter()
            .map(|l| format!("{} {}", l.target, l.message))
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(webpubsub_client::protocol::REDACTED)),
            "URLs are logged, redacted"
        );
        for text in lines.iter().chain([&shown, &format!("{err} {err:?}")]) {
            // The emulator's own log lines are not ours to check, but they must be clean too.
            assert!(!text.contains(&token), "token leaked: {text}");
            assert!(
                !text.contains("awps_reconnection_token=")
                    || text.contains("awps_reconnection_token=REDACTED")
                    || text.contains("awps_reconnection_token=***"),
                "{text}"
            );
        }
    }
}
