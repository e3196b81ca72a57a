//! Replays the fuzz corpus and every kept crash input through the fuzz targets' checks, on
//! stable, so a fixed bug stays fixed. The fuzzing itself: `bash fuzz/run.sh`.

#[path = "../../fuzz/bodies.rs"]
mod bodies;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable directory").path();
            if path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep") {
                let data = std::fs::read(&path).expect("readable input");
                check(&data);
                replayed += 1;
            }
        }
    }
    replayed
}

#[test]
fn frame_decoder_corpus_replays_clean() {
    assert!(
        replay("frame_decode", bodies::frame_decode) > 0,
        "corpus is empty"
    );
}

#[test]
fn stream_deframer_corpus_replays_clean() {
    assert!(
        replay("stream_deframe", bodies::stream_deframe) > 0,
        "corpus is empty"
    );
}

#[test]
fn device_server_corpus_replays_clean() {
    assert!(
        replay("device_serve", bodies::device_serve) > 0,
        "corpus is empty"
    );
}
