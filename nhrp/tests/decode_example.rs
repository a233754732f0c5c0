//! Pins the `decode` example's output format (documented in README.md).

#[allow(dead_code)]
#[path = "../examples/decode.rs"]
mod decode;

use decode::pcapread::read_frames;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");

fn lines(file: &str) -> Vec<String> {
    read_frames(&format!("{DATA}{file}"))
        .unwrap()
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            decode::decode_frame(f.linktype, &f.data)
                .unwrap()
                .map(|l| format!("{}: {}", i + 1, l))
        })
        .collect()
}

#[test]
fn phase3_trace_lines() {
    let expected = include_str!("data/decode-expected.txt");
    let mut got = lines("nhrp-trace.pcap");
    got.extend(lines("ios_nhrp.pcap"));
    let want: Vec<&str> = expected.lines().collect();
    assert_eq!(got, want);
}

#[test]
fn malformed_frame_is_an_error_with_reason() {
    let f = &read_frames(&format!("{DATA}pb_nhrp_1.pcap")).unwrap()[0];
    let err = decode::decode_frame(f.linktype, &f.data).unwrap_err();
    assert!(err.to_string().contains("truncated NHRP packet"), "{err}");
}
