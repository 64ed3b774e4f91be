//! The window as a person would see it: `--demo` in a virtual X server. The demo's second
//! user chats with the window through its Send path, the window's connection is cut and
//! recovers, and the window saves a screenshot of itself once every request was
//! acknowledged. Each of its waits is bounded; it exits with status 0 only if every step
//! happened.
//!
//! Needs `xvfb-run` and software OpenGL (`apt-get install -y xvfb xauth libgl1-mesa-dri`);
//! skipped with a message where `xvfb-run` is absent.

use std::process::Command;

const DESKTOP: &str = env!("CARGO_BIN_EXE_webpubsub-desktop");

#[test]
fn the_demo_chats_through_a_cut_connection_and_saves_a_screenshot() {
    if Command::new("xvfb-run").arg("--help").output().is_err() {
        eprintln!(
            "skipped: xvfb-run is not installed; install it (`apt-get install -y xvfb xauth libgl1-mesa-dri`) to run the desktop demo test"
        );
        return;
    }
    let png_path =
        std::env::temp_dir().join(format!("webpubsub-desktop-{}.png", std::process::id()));
    let _ = std::fs::remove_file(&png_path);
    // `timeout` bounds the X server and the GL set-up; the demo bounds its own steps.
    let output = Command::new("timeout")
        .args(["120", "xvfb-run", "--auto-servernum"])
        .arg("--server-args=-screen 0 1280x800x24")
        .arg(DESKTOP)
        .arg("--demo")
        .arg("--screenshot")
        .arg(&png_path)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .output()
        .expect("timeout and xvfb-run run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the demo failed ({}):\n{stderr}",
        output.status
    );

    let file = std::fs::File::open(&png_path).expect("the screenshot was written");
    let info = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("the screenshot is a PNG")
        .info()
        .clone();
    let _ = std::fs::remove_file(&png_path);
    // The window's inner size, as the demo opens it (at a scale factor of 1 in Xvfb).
    assert_eq!((info.width, info.height), (860, 540));
}
