//! Writes each NHRP packet (NHRP bytes only) and each malformed frame of
//! the given captures into the fuzz corpora under DIR: `DIR/parse/` (raw
//! packets) and `DIR/engine/` (one engine-target record each: time step 1,
//! sender 1, big-endian length, bytes).
//!
//! ```text
//! cargo run -p dmvpn-nhrp --example seed_corpus -- DIR FILE...
//! ```

#[path = "../tests/common/pcapread.rs"]
mod pcapread;

use dmvpn_nhrp::capture::extract_nhrp;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((dir, files)) = args.split_first() else {
        eprintln!("usage: seed_corpus DIR FILE...");
        std::process::exit(2);
    };
    for sub in ["parse", "engine"] {
        if let Err(e) = std::fs::create_dir_all(format!("{dir}/{sub}")) {
            eprintln!("seed_corpus: cannot create {dir}/{sub}: {e}");
            std::process::exit(2);
        }
    }
    let mut n = 0;
    for file in files {
        let frames = pcapread::read_frames(file).unwrap_or_else(|e| {
            eprintln!("seed_corpus: {e}");
            std::process::exit(2);
        });
        for f in frames {
            let bytes = match extract_nhrp(f.linktype, &f.data) {
                Ok(Some(x)) => x.nhrp.to_vec(),
                Ok(None) => continue,
                Err(_) => f.data.clone(),
            };
            let mut record = vec![1, 1];
            record.extend_from_slice(&(bytes.len().min(0xffff) as u16).to_be_bytes());
            record.extend_from_slice(&bytes);
            for (sub, data) in [("parse", &bytes), ("engine", &record)] {
                let name = format!("{dir}/{sub}/seed-{n:03}");
                if let Err(e) = std::fs::write(&name, data) {
                    eprintln!("seed_corpus: {name}: {e}");
                    std::process::exit(2);
                }
            }
            n += 1;
        }
    }
    println!("{n} seeds written to {dir}/parse and {dir}/engine");
}
